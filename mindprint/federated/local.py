"""What a contributor's companion keeps for federated training: its own labeled epochs.

After each accepted trial the labeling run stores the epoch's filtered EEG (the edge
pipeline's output, float32 volts), its channel names, rate and label in
``$MINDPRINT_HOME/federated/epochs/`` — on the device only; the platform never receives
this copy. A round turns them into the round model's windows
(:meth:`LocalEpochs.windows`): epochs whose label is one of the model's classes and
whose montage holds the model's channels at its rate. The privacy ledger (ε spent, rounds
joined, opt-out) lives beside them in ``privacy.json``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mindprint.federated.data import LabeledWindows
from mindprint.federated.model import ModelSpec, montage_rows, windows_of

__all__ = ["LocalEpochs"]


class LocalEpochs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.epochs = root / "epochs"

    @property
    def privacy_path(self) -> Path:
        return self.root / "privacy.json"

    def add(self, label: object, filtered_volts: NDArray[np.floating], names: Sequence[str], sfreq: float) -> Path:
        self.epochs.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.epochs / f"{uuid.uuid4()}.npz"
        np.savez(
            path,
            filtered=np.asarray(filtered_volts, dtype=np.float32),
            meta=np.frombuffer(json.dumps({"label": label, "names": list(names), "sfreq": sfreq}).encode(), np.uint8),
        )
        return path

    def __len__(self) -> int:
        return len(list(self.epochs.glob("*.npz"))) if self.epochs.exists() else 0

    def windows(self, spec: ModelSpec) -> LabeledWindows:
        """The model's labeled windows from every usable stored epoch (others are skipped)."""
        xs, ys = [], []
        for path in sorted(self.epochs.glob("*.npz")) if self.epochs.exists() else []:
            with np.load(path) as held:
                meta = json.loads(held["meta"].tobytes())
                if meta["label"] not in spec.classes or float(meta["sfreq"]) != spec.sfreq:
                    continue
                try:
                    rows = montage_rows(spec, meta["names"])
                except ValueError:
                    continue
                windows = windows_of(held["filtered"][rows].astype(np.float64) * 1e6, spec.window)
            xs.append(windows)
            ys += [spec.classes.index(meta["label"])] * len(windows)
        if not xs:
            empty = np.zeros((0, len(spec.channels), spec.window), np.float32)
            return LabeledWindows(empty, np.zeros(0, np.int64), np.zeros(0))
        return LabeledWindows(np.concatenate(xs), np.asarray(ys, np.int64), np.zeros(len(ys)))
