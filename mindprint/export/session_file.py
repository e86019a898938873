"""Write a recorded session as an MNE-readable FIF or EDF file.

Chunks are concatenated in order; a declared gap is filled with zeros and annotated
``BAD_ACQ_SKIP`` (MNE's own name for skipped acquisition, which MNE excludes from
analysis by default) so that sample times stay true. Markers become annotations.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mne
import numpy as np

from mindprint.core.errors import ConfigurationError, SessionError
from mindprint.device.session import SessionHeader, chunk_samples, iter_chunks, read_header

logger = logging.getLogger(__name__)

FORMATS = ("fif", "edf")


def session_to_raw(path: Path) -> mne.io.RawArray:
    """Build an ``mne.io.RawArray`` (volts) from a session directory."""
    try:
        return chunks_to_raw(read_header(path), (block for _, block in iter_chunks(path)))
    except SessionError as err:
        raise SessionError(f"session {path}: {err}") from err


def chunks_to_raw(header: SessionHeader, chunks: Iterable[dict[str, Any]]) -> mne.io.RawArray:
    """Build an ``mne.io.RawArray`` (volts) from a session's decoded chunk blocks, in order."""
    pieces: list[np.ndarray] = []
    onsets: list[float] = []
    durations: list[float] = []
    descriptions: list[str] = []
    position = 0  # samples so far
    first_t0: int | None = None
    for block in chunks:
        samples = chunk_samples(block).astype(np.float64)
        t0 = int(block["t0_ns"])
        if first_t0 is None:
            first_t0 = t0
        gap = block.get("gap")
        if gap is not None and pieces:
            missing = max(0, round((t0 - first_t0) / 1e9 * header.sfreq) - position)
            if missing:
                pieces.append(np.zeros((samples.shape[0], missing)))
                onsets.append(position / header.sfreq)
                durations.append(missing / header.sfreq)
                descriptions.append("BAD_ACQ_SKIP")
                position += missing
        for index, _code, label in block.get("markers") or []:
            onsets.append((position + int(index)) / header.sfreq)
            durations.append(0.0)
            descriptions.append(str(label))
        pieces.append(samples)
        position += samples.shape[1]
    if not pieces:
        raise SessionError("the session holds no chunks")
    ch_types = [kind if kind in {"eeg", "misc"} else "misc" for kind in header.types]
    info = mne.create_info(list(header.channels), header.sfreq, ch_types)
    raw = mne.io.RawArray(np.concatenate(pieces, axis=1), info, verbose="error")
    if first_t0 is not None:
        raw.set_meas_date(datetime.fromtimestamp(first_t0 / 1e9, tz=UTC))
    raw.set_annotations(mne.Annotations(onsets, durations, descriptions, orig_time=raw.info["meas_date"]))
    return raw


def export_session(path: Path, out: Path, fmt: str | None = None) -> Path:
    """Export a session to ``out`` as FIF or EDF (from ``fmt`` or ``out``'s suffix).

    Returns
    -------
    Path
        The file written. FIF names must end in ``_raw.fif`` or ``.fif``.
    """
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ConfigurationError(f"format must be one of {FORMATS}, got {fmt!r}")
    if out.suffix.lower() != f".{fmt}":
        out = out.with_name(out.name + (f"_raw.{fmt}" if fmt == "fif" else f".{fmt}"))
    raw = session_to_raw(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "fif":
        raw.save(out, overwrite=True, verbose="error")
    else:
        mne.export.export_raw(out, raw, fmt="edf", overwrite=True, verbose="error")
    logger.info("exported %s to %s", path, out)
    return out
