"""The BrainFlow board catalogue and one way to open any board.

Board names, channel counts and sampling rates are read from BrainFlow's own board
descriptions (``BoardShim.get_board_descr``), never from a table of ours. The only thing
BrainFlow does not describe is which connection parameters a board needs; that table
lives here (``_CONNECTION_PARAMS``) and follows BrainFlow's "Supported Boards" page.

BrainFlow's streaming board is refused: it uses multicast, which leaves the machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams
from brainflow.exit_codes import BrainFlowError

from mindprint.core.errors import BoardNotFoundError, ConfigurationError

logger = logging.getLogger(__name__)

__all__ = [
    "CONNECTION_PARAMETERS",
    "BoardInfo",
    "BoardSpec",
    "board_info",
    "list_boards",
    "resolve_board",
]

#: Every connection parameter BrainFlow accepts, as CLI/keyword names.
CONNECTION_PARAMETERS = (
    "serial_port",
    "mac_address",
    "ip_address",
    "ip_port",
    "ip_protocol",
    "serial_number",
    "other_info",
    "timeout",
    "file",
    "master_board",
)

# Boards that must never be opened here (multicast leaves the machine) or are not boards.
_FORBIDDEN = {BoardIds.STREAMING_BOARD.value: "uses multicast, which sends packets off the machine"}
_NOT_BOARDS = {BoardIds.NO_BOARD.value}

_ALIASES = {"playback": "playback_file", "muse2": "muse_2", "muses": "muse_s", "daisy": "cyton_daisy"}

# (required, optional) connection parameters, by BrainFlow board id, from BrainFlow's
# Supported Boards documentation. Boards absent here need none.
_SERIAL = (("serial_port",), ())
_WIFI_SHIELD = (("ip_address",), ("ip_port", "timeout"))
_BLE_DONGLE = (("serial_port",), ("mac_address", "serial_number", "timeout"))
_NATIVE_BLE = ((), ("mac_address", "serial_number", "timeout"))
_CONNECTION_PARAMS: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    BoardIds.PLAYBACK_FILE_BOARD.value: (("file", "master_board"), ()),
    BoardIds.CYTON_BOARD.value: _SERIAL,
    BoardIds.CYTON_DAISY_BOARD.value: _SERIAL,
    BoardIds.GANGLION_BOARD.value: _BLE_DONGLE,
    BoardIds.GANGLION_NATIVE_BOARD.value: _NATIVE_BLE,
    BoardIds.GANGLION_WIFI_BOARD.value: _WIFI_SHIELD,
    BoardIds.CYTON_WIFI_BOARD.value: _WIFI_SHIELD,
    BoardIds.CYTON_DAISY_WIFI_BOARD.value: _WIFI_SHIELD,
    BoardIds.GALEA_BOARD.value: ((), ("ip_address", "timeout")),
    BoardIds.FREEEEG32_BOARD.value: _SERIAL,
    BoardIds.FREEEEG128_BOARD.value: _SERIAL,
    BoardIds.PIEEG_BOARD.value: _SERIAL,
    BoardIds.NEUROPAWN_KNIGHT_BOARD.value: _SERIAL,
    BoardIds.NEUROPAWN_KNIGHT_BOARD_IMU.value: _SERIAL,
    BoardIds.MUSE_S_BLED_BOARD.value: _BLE_DONGLE,
    BoardIds.MUSE_2_BLED_BOARD.value: _BLE_DONGLE,
    BoardIds.MUSE_2016_BLED_BOARD.value: _BLE_DONGLE,
    BoardIds.BRAINBIT_BLED_BOARD.value: _BLE_DONGLE,
    BoardIds.MUSE_2_BOARD.value: _NATIVE_BLE,
    BoardIds.MUSE_S_BOARD.value: _NATIVE_BLE,
    BoardIds.MUSE_2016_BOARD.value: _NATIVE_BLE,
    BoardIds.MUSE_S_ATHENA_BOARD.value: _NATIVE_BLE,
    BoardIds.BRAINBIT_BOARD.value: ((), ("serial_number", "timeout")),
    BoardIds.UNICORN_BOARD.value: ((), ("serial_number",)),
    BoardIds.NOTION_1_BOARD.value: ((), ("serial_number",)),
    BoardIds.NOTION_2_BOARD.value: ((), ("serial_number",)),
    BoardIds.CROWN_BOARD.value: ((), ("serial_number",)),
    BoardIds.CALLIBRI_EEG_BOARD.value: ((), ("other_info", "mac_address", "timeout")),
    BoardIds.CALLIBRI_EMG_BOARD.value: ((), ("other_info", "mac_address", "timeout")),
    BoardIds.CALLIBRI_ECG_BOARD.value: ((), ("other_info", "mac_address", "timeout")),
    BoardIds.ENOPHONE_BOARD.value: (("mac_address",), ()),
    BoardIds.EXPLORE_4_CHAN_BOARD.value: (("mac_address",), ()),
    BoardIds.EXPLORE_8_CHAN_BOARD.value: (("mac_address",), ()),
    BoardIds.EXPLORE_PLUS_8_CHAN_BOARD.value: (("mac_address",), ()),
    BoardIds.EXPLORE_PLUS_32_CHAN_BOARD.value: (("mac_address",), ()),
    BoardIds.EMOTIBIT_BOARD.value: ((), ("ip_address",)),
    BoardIds.NTL_WIFI_BOARD.value: ((), ("ip_address", "ip_port", "timeout")),
    BoardIds.AAVAA_V3_BOARD.value: ((), ("mac_address", "timeout")),
    BoardIds.BRAINALIVE_BOARD.value: ((), ("mac_address", "timeout")),
}


@dataclass(frozen=True, slots=True)
class BoardInfo:
    """What BrainFlow says about one board (default preset).

    ``eeg_channels`` are row indices into BrainFlow's data array; ``sampling_rate`` is in
    hertz. ``required`` and ``optional`` name the connection parameters.
    """

    board_id: int
    enum_name: str
    name: str
    sampling_rate: float | None
    eeg_channels: tuple[int, ...]
    eeg_names: tuple[str, ...]
    timestamp_channel: int | None
    marker_channel: int | None
    accel_channels: tuple[int, ...]
    num_rows: int | None
    required: tuple[str, ...]
    optional: tuple[str, ...]

    @property
    def short_name(self) -> str:
        """CLI name: the BrainFlow enum without ``_BOARD``, lower case (``cyton_daisy``)."""
        return self.enum_name.removesuffix("_BOARD").lower()


def _describe(board: BoardIds) -> BoardInfo:
    descr: dict[str, Any]
    try:
        descr = dict(BoardShim.get_board_descr(board.value))
    except BrainFlowError:
        descr = {}
    names = descr.get("eeg_names")
    required, optional = _CONNECTION_PARAMS.get(board.value, ((), ()))
    return BoardInfo(
        board_id=board.value,
        enum_name=board.name,
        name=str(descr.get("name", board.name)),
        sampling_rate=float(descr["sampling_rate"]) if "sampling_rate" in descr else None,
        eeg_channels=tuple(descr.get("eeg_channels", ())),
        eeg_names=tuple(names.split(",")) if names else (),
        timestamp_channel=descr.get("timestamp_channel"),
        marker_channel=descr.get("marker_channel"),
        accel_channels=tuple(descr.get("accel_channels", ())),
        num_rows=descr.get("num_rows"),
        required=required,
        optional=optional,
    )


@lru_cache(maxsize=1)
def list_boards() -> tuple[BoardInfo, ...]:
    """Every board this BrainFlow build supports, except the streaming board.

    Returns
    -------
    tuple of BoardInfo
        Sorted by board id. Values come from ``BoardShim.get_board_descr``.
    """
    boards = [
        _describe(board) for board in BoardIds if board.value not in _FORBIDDEN and board.value not in _NOT_BOARDS
    ]
    return tuple(sorted(boards, key=lambda info: info.board_id))


def resolve_board(name_or_id: str | int) -> BoardInfo:
    """Find a board by CLI name (``cyton``), enum name (``CYTON_BOARD``) or numeric id.

    Raises
    ------
    BoardNotFoundError
        If nothing matches, with close matches in the message.
    ConfigurationError
        If the board is BrainFlow's streaming board.
    """
    key = str(name_or_id).strip()
    try:
        wanted_id: int | None = int(key)
    except ValueError:
        wanted_id = None
    lowered = _ALIASES.get(key.lower(), key.lower())
    for forbidden_id, why in _FORBIDDEN.items():
        if wanted_id == forbidden_id or lowered in {"streaming", "streaming_board"}:
            raise ConfigurationError(f"board {key!r} is not allowed: BrainFlow's streaming board {why}")
        del forbidden_id
    for info in list_boards():
        if wanted_id is not None and info.board_id == wanted_id:
            return info
        if lowered in {info.short_name, info.enum_name.lower(), info.name.lower()}:
            return info
    close = [info.short_name for info in list_boards() if lowered[:3] and lowered[:3] in info.short_name]
    hint = f"; did you mean {', '.join(close[:5])}?" if close else ""
    raise BoardNotFoundError(f"no BrainFlow board named {key!r}{hint} (run `mindprint devices`)")


def board_info(board_id: int) -> BoardInfo:
    """Return the :class:`BoardInfo` for a numeric BrainFlow board id."""
    return resolve_board(board_id)


@dataclass(frozen=True, slots=True)
class BoardSpec:
    """A board to open: which one, and its connection parameters.

    Parameters
    ----------
    board : BoardInfo
        The board, from :func:`resolve_board`.
    params : dict of str to str
        Connection parameters by name (see ``CONNECTION_PARAMETERS``). For the playback
        board, ``file`` is a BrainFlow CSV and ``master_board`` the board that recorded it.
    """

    board: BoardInfo
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, board: str | int, **params: str | int | None) -> BoardSpec:
        """Resolve ``board`` and check its parameters; ``None`` values are dropped."""
        info = resolve_board(board)
        given = {key: str(value) for key, value in params.items() if value is not None}
        unknown = sorted(set(given) - set(CONNECTION_PARAMETERS))
        if unknown:
            raise ConfigurationError(
                f"unknown connection parameter(s) {unknown}; allowed: {list(CONNECTION_PARAMETERS)}"
            )
        if "master_board" in given:
            given["master_board"] = str(resolve_board(given["master_board"]).board_id)
        missing = [name for name in info.required if name not in given]
        if missing:
            flags = " ".join(f"--{name.replace('_', '-')} ..." for name in missing)
            raise ConfigurationError(f"board {info.short_name!r} needs {flags}")
        if "file" in given and not Path(given["file"]).is_file():
            raise ConfigurationError(f"file={given['file']!r} does not exist")
        return cls(board=info, params=given)

    @property
    def data_board(self) -> BoardInfo:
        """The board whose data layout the stream has (the master board for playback)."""
        if "master_board" in self.params:
            return board_info(int(self.params["master_board"]))
        return self.board

    def input_params(self) -> BrainFlowInputParams:
        """Build BrainFlow's ``BrainFlowInputParams`` from ``params``."""
        params = BrainFlowInputParams()
        for key, value in self.params.items():
            if key in {"ip_port", "ip_protocol", "timeout", "master_board"}:
                setattr(params, key, int(value))
            else:
                setattr(params, key, value)
        return params
