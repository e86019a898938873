"""The exported dataset's layout and the helpers both the exporter and ``mindprint verify`` use.

Imports nothing of the platform's server stack, so a researcher's verifier stays light.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["DIGESTS", "FEATURES", "TASK", "flat_features", "iter_files", "label_text", "sha256_file"]

TASK = "labeling"
DIGESTS = "sourcedata/mindprint/SHA256SUMS"
FEATURES = "derivatives/mindprint/features.parquet"


def label_text(label: Any) -> str:
    """The label as events.tsv shows it: plain text when that is unambiguous, else JSON."""
    if (
        isinstance(label, str)
        and label
        and label != "n/a"
        and label.isprintable()
        and '"' not in label
        and label.strip() == label
    ):
        return label
    return json.dumps(label, sort_keys=True, ensure_ascii=False)


def _flat(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for key in sorted(value):
            _flat(f"{prefix}.{key}" if prefix else str(key), value[key], out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = float(value)


def flat_features(features: Any) -> dict[str, float]:
    """Nested feature summary → ``{"band_power.alpha": …}`` (numbers only)."""
    out: dict[str, float] = {}
    _flat("", features, out)
    return out


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` in a fixed order (relative paths, POSIX)."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        yield path.relative_to(root)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
