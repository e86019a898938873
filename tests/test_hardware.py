"""Board profiles in hardware/ agree with BrainFlow and with MNE's 10-20 montage."""

from __future__ import annotations

import json
from pathlib import Path

import mne
import pytest

from mindprint.device.boards import resolve_board

PROFILES = sorted((Path(__file__).resolve().parents[1] / "hardware" / "profiles").glob("*.json"))
STANDARD_1020 = set(mne.channels.make_standard_montage("colin27_1005").ch_names)


def test_every_required_board_has_a_profile() -> None:
    names = {p.stem for p in PROFILES}
    assert {
        "cyton",
        "cyton_daisy",
        "ganglion",
        "muse_2",
        "muse_s",
        "crown",
        "notion_1",
        "notion_2",
        "unicorn",
        "synthetic",
    } <= names


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_matches_brainflow_and_the_montage(path: Path) -> None:
    profile = json.loads(path.read_text())
    board = resolve_board(profile["brainflow_board"])
    channels = [c["name"] for c in profile["channels"]]
    assert len(channels) == len(board.eeg_channels)
    if board.eeg_names:
        assert tuple(channels) == board.eeg_names
    assert {c["position_10_20"] for c in profile["channels"]} <= STANDARD_1020
