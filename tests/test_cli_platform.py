"""CLI commands a new user meets first: --version, requesters' `project create`, clean errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from typer.testing import CliRunner

from mindprint.api.server import ServerThread, start_platform
from mindprint.cli import app
from mindprint.companion.client import PlatformClient

from .test_api import OPERATOR, _settings

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("mindprint ")


@pytest.mark.parametrize("marker", ["10:late", "-1:neg", "x:y"])
def test_markers_outside_the_recording_are_refused(tmp_path: Path, marker: str) -> None:
    result = runner.invoke(app, ["record", "--duration", "2", "--out", str(tmp_path / "s"), "--marker", marker])
    assert result.exit_code == 2 and "--marker" in result.output
    assert not (tmp_path / "s").exists()  # refused before the board was opened


def test_malformed_wallet_key_is_a_clean_error(tmp_path: Path) -> None:
    key_file = tmp_path / "wallet.key"
    key_file.write_text("not a key")
    result = runner.invoke(
        app, ["project", "create", "--api", "http://127.0.0.1:9", "--name", "x", "--classes", "a,b",
              "--wallet-key-file", str(key_file)],
    )  # fmt: skip
    assert result.exit_code == 2 and "not a private key" in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    running = start_platform(_settings(tmp_path, data_dir=tmp_path / "platform"), worker_interval=5)
    try:
        with ServerThread(running.app) as thread:
            yield thread.url
    finally:
        running.close()


def test_project_create_with_items_and_gold(server: str, tmp_path: Path) -> None:
    requester = Account.create()
    admin = PlatformClient(server, OPERATOR)
    admin.sign_in()
    httpx.put(
        f"{server}/accounts/{requester.address}/role",
        json={"role": "requester"},
        headers={"Authorization": f"Bearer {admin.token}"},
    ).raise_for_status()
    key_file = tmp_path / "requester.key"
    key_file.write_text(requester.key.hex())
    items = tmp_path / "items.csv"
    items.write_text("text,gold\nIs it a square?,\nIs 2+2=4?,yes\nIs the sky green?,\n")
    result = runner.invoke(
        app,
        ["project", "create", "--api", server, "--name", "first", "--classes", "yes,no", "--redundancy", "1",
         "--challenge-cues", "2", "--items", str(items), "--wallet-key-file", str(key_file)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 items added (1 gold)" in result.output and "2 challenge cues per task" in result.output
    more = tmp_path / "more.json"
    more.write_text('[{"text": "one more"}]')
    added = runner.invoke(
        app, ["project", "items", "--api", server, "--project", "1", "--items", str(more),
              "--wallet-key-file", str(key_file)],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    contributor = PlatformClient(server, Account.create())
    contributor.sign_in()
    task = contributor.next_task(1)
    assert task is not None and task["content"]["text"] == "Is it a square?" and "gold" not in task
    assert len(task["challenge"]["offsets_ms"]) == 2 and len(task["challenge"]["nonce"]) == 32
    bad_gold = tmp_path / "bad.csv"
    bad_gold.write_text("text,gold\nq,maybe\n")
    refused = runner.invoke(
        app, ["project", "items", "--api", server, "--project", "1", "--items", str(bad_gold),
              "--wallet-key-file", str(key_file)],
    )  # fmt: skip
    assert refused.exit_code == 1 and "gold answer" in refused.output


def test_unknown_board_is_bad_usage(tmp_path: Path) -> None:
    result = runner.invoke(app, ["record", "--board", "no-such-board", "--duration", "1", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_recording_into_an_existing_session_is_refused_before_the_board_opens(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "session.car").write_bytes(b"x")
    result = runner.invoke(app, ["record", "--board", "cyton", "--serial-port", "/dev/nonexistent",
                                 "--duration", "1", "--out", str(tmp_path / "s")])  # fmt: skip
    assert result.exit_code == 4 and "already exists" in result.output  # not a device error (3)


def test_label_ui_from_the_cli(server: str, tmp_path: Path) -> None:
    """`mindprint label --ui`: the page the CLI serves drives the run (shown → stimulus,
    answer → response), over real replayed EEG; the verdicts come back to the page."""
    import threading
    import time

    from mindprint.api.server import free_port
    from mindprint.device.keys import DeviceKey
    from mindprint.device.openbci import import_recording

    from .conftest import CYTON_CSV, require

    requester = Account.create()
    admin = PlatformClient(server, OPERATOR)
    admin.sign_in()
    admin.call("PUT", f"/accounts/{requester.address}/role", json={"role": "requester"})
    owner = PlatformClient(server, requester)
    owner.sign_in()
    project = owner.call(
        "POST", "/projects", json={"name": "ui", "label_schema": {"kind": "classes", "classes": ["a", "b"]}}
    )
    owner.call("POST", f"/projects/{project['id']}/items", json={"items": [{"content": {"text": "x"}}] * 2})
    wallet_file, key_file = tmp_path / "wallet.key", tmp_path / "device.pem"
    wallet_file.write_text(Account.create().key.hex())
    DeviceKey.generate().save(key_file)
    playback = tmp_path / "cyton.csv"
    import_recording(require(CYTON_CSV), playback, start_seconds=28, seconds=40)
    port = free_port()
    args = ["label", "--api", server, "--ui", "--ui-port", str(port), "--no-ui-keep-open", "--count", "2",
            "--project", str(project["id"]), "--board", "playback", "--file", str(playback), "--master-board",
            "cyton", "--wallet-key-file", str(wallet_file), "--key-file", str(key_file), "--out",
            str(tmp_path / "session"), "--no-keep-epochs"]  # fmt: skip
    outcome: list[object] = []
    cli = threading.Thread(target=lambda: outcome.append(runner.invoke(app, args)), daemon=True)
    cli.start()
    page = f"http://127.0.0.1:{port}"
    headers = {"X-Requested-With": "mindprint"}
    answered: set[int] = set()
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=page, timeout=10) as http:
        while cli.is_alive() and time.monotonic() < deadline:
            try:
                state = http.get("/api/state").json()
            except httpx.TransportError:  # the page is not up yet
                time.sleep(0.2)
                continue
            task = state["task"]
            if state["phase"] == "showing" and task and task["id"] not in answered:
                assert http.post("/api/shown", json={"task": task["id"]}, headers=headers).status_code == 200
                time.sleep(0.3)
                answer = {"task": task["id"], "label": "a"}
                assert http.post("/api/answer", json=answer, headers=headers).status_code == 200
                answered.add(task["id"])
            if state["phase"] in ("done", "failed"):
                assert state["phase"] == "done", state["error"]
                assert [t["label"] for t in state["trials"]] == ["a", "a"]
                assert all(t["status"] in ("accepted", "rejected") for t in state["trials"])
                break
            time.sleep(0.2)
    cli.join(30)
    assert outcome, "the CLI did not return"
    result = outcome[0]
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "2 samples labelled" in result.output  # type: ignore[attr-defined]
