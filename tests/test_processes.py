"""``mindprint serve --workers 2``: a listening socket per API process (connections spread
evenly), an API process that dies is restarted, and none outlives a killed supervisor."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
from eth_account import Account

from .services import ANVIL_KEY, mindprint_server, parent_pid, port_sockets, socket_holders


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _commands(pids: dict[int, int]) -> dict[int, str]:
    """PID -> command line (or why it cannot be read)."""
    out = {}
    for pid in pids:
        try:
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except OSError as err:
            out[pid] = f"unreadable: {err}"
    return out


def _wait(check: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_api_processes_each_listen_share_connections_and_are_restarted(tmp_path: Path, anvil_url: str) -> None:
    env = {"MINDPRINT_OPERATOR_KEY": ANVIL_KEY, "MINDPRINT_SIGN_INS_PER_MINUTE": "0"}
    args = ("--workers", "2", "--rpc-url", anvil_url, "--deploy")
    with mindprint_server(tmp_path, Account.create().address, env, args) as base:
        port = int(base.rsplit(":", 1)[1])
        listening = lambda: socket_holders(port_sockets(port, "0A"))  # noqa: E731
        _wait(lambda: len(listening()) == 2, "two API processes listening")
        listeners = listening()
        assert sorted(listeners.values()) == [1, 1]  # a socket each, not one shared
        supervisor = {parent_pid(pid) for pid in listeners}
        assert len(supervisor) == 1
        # 32 clients connecting at the same moment: the kernel spreads them over the sockets
        # (one shared socket gave one process 29 of 32 in a measured run)
        clients = [httpx.Client(base_url=base, timeout=30) for _ in range(32)]
        barrier = threading.Barrier(len(clients))

        def connect(client: httpx.Client) -> int:
            barrier.wait()
            return client.get("/health").status_code

        threads = [threading.Thread(target=connect, args=(client,)) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        served = socket_holders(port_sockets(port, "01"))
        assert set(served) == set(listeners) and min(served.values()) >= 4, served
        for client in clients:
            client.close()
        # an API process killed outright: the supervisor starts another, the port keeps serving
        victim = min(listeners)
        os.kill(victim, signal.SIGKILL)
        _wait(
            lambda: len(listening()) == 2 and victim not in listening(), "a new API process in place of the killed one"
        )
        assert httpx.get(f"{base}/health", timeout=30).status_code == 200
        # the supervisor killed outright: its API processes stop with it, nothing keeps the port
        processes = set(listening())
        os.kill(supervisor.pop(), signal.SIGKILL)
        _wait(lambda: not any(_alive(pid) for pid in processes), "API processes stopped with their supervisor", 30)
        # the kernel drops the listening sockets as the processes' files close; under a loaded
        # machine (the full suite) the table lagged the processes' exit once: poll, and name
        # any process still holding the port
        deadline = time.monotonic() + 15
        while port_sockets(port, "0A") and time.monotonic() < deadline:
            time.sleep(0.2)
        left = port_sockets(port, "0A")
        assert not left, f"the port is still listening, held by {_commands(socket_holders(left))}"
