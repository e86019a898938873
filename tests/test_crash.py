"""A session killed with SIGKILL mid-recording reopens and every written chunk verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mindprint.device.keys import DeviceKey
from mindprint.device.session import SESSION_FILE, SessionWriter, verify_session

from .conftest import make_chunks, write_session


def test_sigkill_mid_recording_loses_nothing_written(tmp_path: Path) -> None:
    key_path = tmp_path / "key.pem"
    DeviceKey.generate().save(key_path)
    out = tmp_path / "session"
    env = {**os.environ, "MINDPRINT_HOME": str(tmp_path)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mindprint.cli",
            "record",
            "--board",
            "synthetic",
            "--duration",
            "60",
            "--chunk-seconds",
            "0.2",
            "--out",
            str(out),
            "--key-file",
            str(key_path),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (out / SESSION_FILE).exists() and verify_session(out).chunks >= 8:
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    report = verify_session(out)
    assert report.ok, report.issues
    assert report.chunks >= 8
    # reopen: `record --resume` appends to the same chain after a declared gap
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mindprint.cli",
            "record",
            "--resume",
            "--board",
            "synthetic",
            "--duration",
            "1",
            "--chunk-seconds",
            "0.2",
            "--out",
            str(out),
            "--key-file",
            str(key_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    after = verify_session(out)
    assert after.ok, after.issues
    assert after.chunks == report.chunks + 5
    assert [gap["reason"] for gap in after.gaps] == ["session resumed"]
    assert after.gaps[0]["seq"] == report.chunks


def test_resume_continues_the_chain(tmp_path: Path) -> None:
    key = DeviceKey.generate()
    chunks = make_chunks(6)
    path = write_session(tmp_path / "s", key, chunks[:3])
    with SessionWriter.resume(path, key, fsync=False) as writer:
        for chunk in chunks[3:]:
            writer.append(chunk)
    report = verify_session(path)
    assert report.ok and report.chunks == 6
