"""The CLI: every command has help, errors become clean messages and exit codes."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from mindprint.cli import app
from mindprint.device.session import SESSION_FILE

runner = CliRunner()


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if getattr(command, "commands", None):
            found.extend(_commands(command, path))
    return found


ALL_COMMANDS = _commands(typer.main.get_command(app))


def test_the_expected_commands_exist() -> None:
    expected = {
        ("devices",),
        ("record",),
        ("demo",),
        ("device", "init"),
        ("device", "show"),
        ("device", "import"),
        ("session", "verify"),
        ("session", "export"),
    }
    assert expected <= set(ALL_COMMANDS)


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    group = typer.main.get_command(app)
    command = group
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help and len(command.help.strip()) > 10, f"`mindprint {' '.join(path)}` has no help text"
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0


def test_devices_json_lists_brainflow_boards() -> None:
    result = runner.invoke(app, ["devices", "--json"])
    assert result.exit_code == 0
    boards = {b["name"]: b for b in json.loads(result.stdout)}
    assert boards["cyton"]["eeg_channels"] == 8 and boards["cyton"]["sampling_rate"] == 250
    assert boards["cyton"]["required"] == ["serial_port"]
    assert "streaming" not in boards


def test_device_init_show_and_no_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDPRINT_HOME", str(tmp_path))
    result = runner.invoke(app, ["device", "init"])
    assert result.exit_code == 0, result.output
    key_file = tmp_path / "device_key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "PRIVATE" not in result.output
    shown = runner.invoke(app, ["device", "show"])
    assert shown.exit_code == 0 and len(shown.stdout.strip()) == 64
    again = runner.invoke(app, ["device", "init"])
    assert again.exit_code == 4 and "refusing to overwrite" in again.output


def test_record_verify_export_and_tamper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDPRINT_HOME", str(tmp_path))
    assert runner.invoke(app, ["device", "init"]).exit_code == 0
    out = tmp_path / "rec"
    result = runner.invoke(
        app,
        [
            "record",
            "--board",
            "synthetic",
            "--duration",
            "1.5",
            "--chunk-seconds",
            "0.5",
            "--marker",
            "0.5:stimulus",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    verified = runner.invoke(app, ["session", "verify", str(out), "--json"])
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.stdout)
    assert report["ok"] and report["chunks"] == 3 and report["markers"] == 1
    exported = runner.invoke(app, ["session", "export", str(out), "--out", str(tmp_path / "rec.edf")])
    assert exported.exit_code == 0 and (tmp_path / "rec.edf").exists()
    data = bytearray((out / SESSION_FILE).read_bytes())
    data[-300] ^= 0xFF
    (out / SESSION_FILE).write_bytes(bytes(data))
    tampered = runner.invoke(app, ["session", "verify", str(out)])
    assert tampered.exit_code == 5
    assert "[cid-mismatch]" in tampered.stdout
    assert "chunk seq 2" in tampered.stdout or "after chunk seq 1" in tampered.stdout


def test_errors_are_clean_messages_with_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDPRINT_HOME", str(tmp_path))
    result = runner.invoke(app, ["record", "--board", "cyton", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--serial-port" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["record", "--board", "streaming", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "multicast" in result.output
    result = runner.invoke(app, ["record", "--board", "synthetic", "--out", str(tmp_path / "x")])
    assert result.exit_code == 4 and "mindprint device init" in result.output
    result = runner.invoke(
        app,
        [
            "record",
            "--board",
            "cyton",
            "--serial-port",
            "/dev/nonexistent-tty",
            "--out",
            str(tmp_path / "y"),
            "--key-file",
            str(tmp_path / "none.pem"),
        ],
    )
    assert result.exit_code in {3, 4}


def test_check_shows_quality_and_band_powers() -> None:
    result = runner.invoke(app, ["check", "--board", "synthetic", "--seconds", "3.5", "--line-freq", "none"])
    assert result.exit_code == 0, result.output
    assert "quality" in result.stdout and "alpha %" in result.stdout
    assert "Fz" in result.stdout and "PO8" in result.stdout


def test_check_previews_liveness_as_the_platform_scores_a_sample(tmp_path: Path) -> None:
    """Real Cyton EEG played back: the last 4 s would be accepted; the synthetic board's
    would be rejected, with the platform's reason."""
    from mindprint.device.openbci import import_recording

    from .conftest import CYTON_CSV, require

    playback = tmp_path / "cyton.csv"
    import_recording(require(CYTON_CSV), playback, start_seconds=40.0, seconds=12.0)
    real = runner.invoke(
        app, ["check", "--board", "playback", "--file", str(playback), "--seconds", "7", "--line-freq", "none"]
    )
    assert real.exit_code == 0, real.output
    assert "waiting for 4 s of data" in real.stdout
    assert "a sample would be accepted" in real.stdout and "would be rejected" not in real.stdout
    board = runner.invoke(app, ["check", "--board", "synthetic", "--seconds", "6", "--line-freq", "none"])
    assert board.exit_code == 0, board.output
    assert "a sample would be rejected: liveness" in board.stdout and "would be accepted" not in board.stdout
    assert not board.stdout.rstrip().endswith("fill a window…")  # Live's last frame is not the waiting line


def test_a_two_channel_pair_that_shares_little_activity_gets_a_montage_hint() -> None:
    """Two channels that share nothing (Fp1 now, O1 from 30 s earlier: what a pair of
    independent electrodes gives) are rejected and the contributor is told why and what to
    change; Fp1 with O1 of the same moment share beta activity and are accepted (they were
    rejected by the broadband correlation until the twelfth session), as are C3 with C4."""
    from mindprint.cli import liveness_preview
    from mindprint.device.openbci import read_openbci_gui_csv
    from mindprint.labeling.verification.model import load_default_model

    from .conftest import CYTON_CSV, require

    cyton = read_openbci_gui_csv(require(CYTON_CSV)).data[1:9] * 1e-6
    model = load_default_model()
    epoch = cyton[:, 50 * 250 : 54 * 250]
    assert "waiting for 4 s of data (have 2.0 s)" in liveness_preview(model, epoch[:, :500], 250.0)
    unrelated = liveness_preview(model, np.vstack([epoch[0], cyton[6, 20 * 250 : 24 * 250]]), 250.0)
    assert "share little activity" in unrelated and "would be rejected" in unrelated
    for pair in ([0, 6], [2, 3]):  # Fp1 and O1, C3 and C4
        shown = liveness_preview(model, epoch[pair], 250.0)
        assert "share little activity" not in shown and "would be accepted" in shown, (pair, shown)
    assert "cannot score" in liveness_preview(model, np.full((2, 1000), np.nan), 250.0)
    # two electrodes bridged by gel (or one channel copied): one signal, and the contributor is told
    bridged = np.vstack([epoch[2], epoch[2] + np.random.default_rng(0).normal(0, 1e-7, 1000)])
    shown = liveness_preview(model, bridged, 250.0)
    assert "would be rejected" in shown and "carry one signal" in shown and "bridged" in shown, shown


def test_check_rejects_a_bad_line_frequency() -> None:
    result = runner.invoke(app, ["check", "--line-freq", "55"])
    assert result.exit_code == 2 and "--line-freq" in result.output
