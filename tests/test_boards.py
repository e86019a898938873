from __future__ import annotations

import pytest
from brainflow.board_shim import BoardIds, BoardShim

from mindprint.core.errors import BoardNotFoundError, ConfigurationError
from mindprint.device.boards import BoardSpec, list_boards, resolve_board


def test_catalogue_comes_from_brainflow_descriptions() -> None:
    boards = list_boards()
    ids = {b.board_id for b in boards}
    assert BoardIds.STREAMING_BOARD.value not in ids
    assert len(boards) == len(BoardIds) - 2  # all but the streaming board and NO_BOARD
    for board in boards:
        if board.sampling_rate is None:
            continue
        descr = BoardShim.get_board_descr(board.board_id)
        assert board.sampling_rate == descr["sampling_rate"]
        assert board.eeg_channels == tuple(descr.get("eeg_channels", ()))


@pytest.mark.parametrize(
    ("name", "board_id"), [("cyton", 0), ("CYTON_DAISY_BOARD", 2), ("-1", -1), ("playback", -3), (38, 38)]
)
def test_resolve_by_name_or_id(name: str | int, board_id: int) -> None:
    assert resolve_board(name).board_id == board_id


def test_streaming_board_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="multicast"):
        resolve_board("streaming")
    with pytest.raises(ConfigurationError, match="multicast"):
        resolve_board(-2)


def test_unknown_board_suggests_names() -> None:
    with pytest.raises(BoardNotFoundError, match="did you mean"):
        resolve_board("cytonn")


def test_required_parameters_are_named() -> None:
    with pytest.raises(ConfigurationError, match="--serial-port"):
        BoardSpec.create("cyton")
    spec = BoardSpec.create("cyton", serial_port="/dev/ttyUSB0")
    assert spec.input_params().serial_port == "/dev/ttyUSB0"
    with pytest.raises(ConfigurationError, match="unknown connection parameter"):
        BoardSpec.create("synthetic", colour="blue")
    with pytest.raises(ConfigurationError, match="does not exist"):
        BoardSpec.create("playback", file="/nonexistent.csv", master_board="cyton")
