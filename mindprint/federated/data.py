"""Labeled EEG windows for the federated model, cut exactly as the platform's samples are.

The real task with ground truth shipped in the repository: the OpenBCI Cyton recording
(eyes-closed alpha from about 29 to 76 s, dipping 55–64 s; eyes open with blinks and jaw
clenches before and after — how those times were found is in
``tests/test_real_recordings.py``). The recording is cut into consecutive 4 s epochs (the
platform's sample length); each epoch goes through the edge pipeline on its own, as on a
contributor's device, and its filtered signal is cut into 1 s windows, labeled by time.
Windows in the uncertain stretches (27–30 s, 54–65 s, 75–78 s) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mindprint.federated.model import ModelSpec, montage_rows, windows_of
from mindprint.signal.pipeline import process_recording

__all__ = ["CYTON_CHANNELS", "LabeledWindows", "cyton_eyes_closed", "epoch_windows"]

CYTON_CHANNELS = ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")
EYES_CLOSED = ((30.0, 54.0), (65.0, 75.0))
EYES_OPEN = ((0.0, 27.0), (78.0, 90.0))


@dataclass(frozen=True, slots=True)
class LabeledWindows:
    x: NDArray[np.float32]  # (n, channels, window), scaled
    y: NDArray[np.int64]  # class index
    t: NDArray[np.float64]  # window start, seconds into the recording

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: NDArray[np.integer] | Sequence[int]) -> LabeledWindows:
        index = np.asarray(index, dtype=np.int64)
        return LabeledWindows(self.x[index], self.y[index], self.t[index])


def epoch_windows(
    raw_volts: NDArray[np.floating], sfreq: float, names: Sequence[str], spec: ModelSpec
) -> NDArray[np.float32]:
    """The model's input windows of one raw epoch: the pipeline's filtered EEG in the model's montage."""
    filtered = process_recording(np.asarray(raw_volts, dtype=np.float64), sfreq, list(names)).filtered
    return windows_of(filtered[montage_rows(spec, names)] * 1e6, spec.window)


def _label(start: float, end: float) -> int | None:
    for spans, label in ((EYES_CLOSED, 1), (EYES_OPEN, 0)):
        if any(a <= start and end <= b for a, b in spans):
            return label
    return None


def cyton_eyes_closed(path: Path, spec: ModelSpec | None = None, epoch_seconds: float = 4.0) -> LabeledWindows:
    """Every labeled 1 s window of the Cyton recording (see the module docstring)."""
    from mindprint.device.openbci import read_openbci_gui_csv

    spec = spec or ModelSpec()
    recording = read_openbci_gui_csv(path)
    eeg = recording.data[1:9] * 1e-6
    sfreq = recording.sampling_rate
    step = int(round(epoch_seconds * sfreq))
    xs, ys, ts = [], [], []
    for begin in range(0, eeg.shape[1] - step + 1, step):
        windows = epoch_windows(eeg[:, begin : begin + step], sfreq, CYTON_CHANNELS, spec)
        for i, window in enumerate(windows):
            start = (begin + i * spec.window) / sfreq
            label = _label(start, start + spec.window / sfreq)
            if label is not None:
                xs.append(window)
                ys.append(label)
                ts.append(start)
    return LabeledWindows(np.stack(xs), np.asarray(ys, dtype=np.int64), np.asarray(ts))
