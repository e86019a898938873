"""Import recordings into BrainFlow's playback format.

The OpenBCI GUI (v5/v6) writes "raw" CSV files: ``%`` header lines, a column header,
then one row per sample whose first 24 columns are BrainFlow's Cyton rows (package
number, 8 EXG channels in µV, accelerometer, other, analog, timestamp in *milliseconds*,
marker) followed by a formatted time. BrainFlow's own CSV (``DataFilter.write_file``) is
tab-separated rows × samples, timestamps in seconds. Both become a BrainFlow CSV that the
playback board replays.
"""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from brainflow.board_shim import BoardIds
from brainflow.data_filter import DataFilter
from brainflow.exit_codes import BrainFlowError
from numpy.typing import NDArray

from mindprint.core.errors import ConfigurationError, DeviceError
from mindprint.device.boards import board_info

logger = logging.getLogger(__name__)

_GUI_BOARDS = {
    "cytondaisy": BoardIds.CYTON_DAISY_BOARD,
    "cyton": BoardIds.CYTON_BOARD,
    "ganglion": BoardIds.GANGLION_BOARD,
}


@dataclass(frozen=True, slots=True)
class ImportedRecording:
    """BrainFlow data array (rows, n_samples) and the board whose layout it has."""

    data: NDArray[np.float64]
    board_id: int
    sampling_rate: float


def read_openbci_gui_csv(path: Path) -> ImportedRecording:
    """Read an OpenBCI GUI raw CSV into BrainFlow's row layout.

    Returns
    -------
    ImportedRecording
        ``data`` has shape (num_rows, n_samples), timestamps in seconds.

    Raises
    ------
    DeviceError
        If the file is not an OpenBCI GUI recording or its rows are malformed.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    board_id: int | None = None
    rate: float | None = None
    rows: list[list[float]] = []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.startswith("%"):
                    if match := re.search(r"Sample Rate = ([\d.]+)", line):
                        rate = float(match.group(1))
                    if match := re.search(r"Board = \S*?Board(\w+?)(Serial|Wifi|Ble|Native)?\s*$", line):
                        key = match.group(1).lower()
                        board_id = next((b.value for k, b in _GUI_BOARDS.items() if key.startswith(k)), None)
                    continue
                if line.startswith("Sample Index") or not line.strip():
                    continue
                if board_id is None:
                    raise DeviceError(f"{path}: no '%Board = ...' header line before the data")
                width = board_info(board_id).num_rows or 0
                fields = line.split(",")
                if len(fields) < width:
                    raise DeviceError(f"{path}:{number}: {len(fields)} columns, expected at least {width}")
                try:
                    rows.append([float(value) for value in fields[:width]])
                except ValueError as err:
                    raise DeviceError(f"{path}:{number}: {err}") from err
    except OSError as err:
        raise DeviceError(f"cannot read {path}: {err}") from err
    if board_id is None or not rows:
        raise DeviceError(f"{path} is not an OpenBCI GUI raw recording (no board header or no samples)")
    info = board_info(board_id)
    data = np.ascontiguousarray(np.asarray(rows).T)
    if info.timestamp_channel is not None:
        data[info.timestamp_channel] /= 1000.0  # GUI writes milliseconds, BrainFlow seconds
    return ImportedRecording(data=data, board_id=board_id, sampling_rate=rate or float(info.sampling_rate or 0))


def read_brainflow_csv(path: Path, board: int) -> ImportedRecording:
    """Read a file written by ``DataFilter.write_file`` for ``board``."""
    info = board_info(board)
    try:
        data = np.asarray(DataFilter.read_file(str(path)), dtype=np.float64)
    except BrainFlowError as err:
        raise DeviceError(f"cannot read BrainFlow CSV {path}: {err}") from err
    if data.ndim != 2 or data.shape[0] != info.num_rows:
        raise DeviceError(f"{path} has {data.shape[0]} rows; board {info.short_name!r} needs {info.num_rows}")
    return ImportedRecording(data=data, board_id=info.board_id, sampling_rate=float(info.sampling_rate or 0))


def write_playback_file(
    recording: ImportedRecording, out: Path, *, start_seconds: float = 0.0, seconds: float | None = None
) -> Path:
    """Write (an excerpt of) ``recording`` as a BrainFlow CSV for the playback board."""
    if start_seconds < 0 or (seconds is not None and seconds <= 0):
        raise ConfigurationError(f"bad excerpt start={start_seconds} seconds={seconds}")
    first = int(start_seconds * recording.sampling_rate)
    last = None if seconds is None else first + int(seconds * recording.sampling_rate)
    data = np.ascontiguousarray(recording.data[:, first:last])
    if data.shape[1] == 0:
        raise ConfigurationError(f"excerpt starting at {start_seconds} s is empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    DataFilter.write_file(data, str(out), "w")
    return out


def import_recording(path: Path, out: Path, *, board: int | None = None, **excerpt: float | None) -> ImportedRecording:
    """Convert an OpenBCI GUI CSV (or a BrainFlow CSV when ``board`` is given) to ``out``."""
    recording = read_brainflow_csv(path, board) if board is not None else read_openbci_gui_csv(path)
    write_playback_file(recording, out, **excerpt)  # type: ignore[arg-type]
    return recording
