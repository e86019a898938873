"""Real services for integration tests: anvil and the js-ipfs daemon, on loopback.

Both come from npm (tools/package.json, installed by `make test`). Each is started on a
free 127.0.0.1 port by the test that needs it and stopped (SIGTERM, then SIGKILL) by
its PID when the test ends. Nothing here contacts another address: the IPFS repository
is initialised with no bootstrap peers, no swarm listeners, MDNS and WebRTC discovery
off, and the daemon runs --offline.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "tools" / "node_modules" / ".bin"
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's well-known dev account 0
ANVIL_KEYS = [
    ANVIL_KEY,
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (part of `make test`)")
    return path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until(check: object, what: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start within {timeout} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def anvil_node(workdir: Path) -> Iterator[str]:
    """Start anvil on a free loopback port; yields its JSON-RPC URL."""
    port = free_port()
    log = workdir / f"anvil-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(_tool("anvil")),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--chain-id",
                "31337",
                "--hardfork",
                "cancun",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        _wait_until(lambda: httpx.post(url, json=payload, timeout=1).status_code == 200, "anvil", process, log)
        yield url
    finally:
        _stop(process)


def init_ipfs_repo(repo: Path, api_port: int) -> dict[str, str]:
    env = {**os.environ, "IPFS_PATH": str(repo)}
    subprocess.run(
        [str(_tool("jsipfs")), "init", "--empty-repo"], env=env, check=True, capture_output=True, timeout=120
    )
    config_path = repo / "config"
    config = json.loads(config_path.read_text())
    config["Addresses"].update(
        {
            "Swarm": [],
            "Announce": [],
            "API": f"/ip4/127.0.0.1/tcp/{api_port}",
            "Gateway": f"/ip4/127.0.0.1/tcp/{free_port()}",
            "RPC": f"/ip4/127.0.0.1/tcp/{free_port()}",
            "Delegates": [],
        }
    )
    config["Bootstrap"] = []
    config["Discovery"]["MDNS"]["Enabled"] = False
    config["Discovery"]["webRTCStar"]["Enabled"] = False
    config_path.write_text(json.dumps(config, indent=1))
    return env


@contextlib.contextmanager
def ipfs_node(workdir: Path, api_port: int | None = None) -> Iterator[str]:
    """Start the js-ipfs daemon offline on loopback; yields its RPC API URL."""
    port = api_port or free_port()
    repo = workdir / f"ipfs-{port}"
    env = init_ipfs_repo(repo, port) if not repo.exists() else {**os.environ, "IPFS_PATH": str(repo)}
    log = workdir / f"ipfs-{port}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(_tool("jsipfs")), "daemon", "--offline", "--enable-preload=false"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(
            lambda: httpx.post(f"{url}/api/v0/version", timeout=2).status_code == 200, "js-ipfs", process, log, 120
        )
        yield url
    finally:
        _stop(process)


def _pg_bin(name: str) -> str:
    import glob
    import shutil

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found[-1] if found else shutil.which(name)
    if not path:
        pytest.fail(f"PostgreSQL's {name} is missing: run `make postgres` (part of `make test`)")
    return path


@contextlib.contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """Debian's PostgreSQL on a free 127.0.0.1 port; yields a base URL (no database name).

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
    """
    port = free_port()
    data = workdir / "pgdata"
    sockets = workdir / "pgsock"
    data.mkdir(parents=True)
    sockets.mkdir()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        subprocess.run(["chown", "-R", "postgres", str(workdir)], check=True)
        workdir.chmod(0o755)
    initdb = [*prefix, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
    subprocess.run(initdb, check=True, capture_output=True, timeout=120)
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c full_page_writes=off"
    log = workdir / "pg.log"
    subprocess.run(
        [*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, timeout=60
        )


def create_database(base_url: str, name: str) -> str:
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"{base_url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{base_url}/{name}"


@contextlib.contextmanager
def mindprint_server(
    home: Path, operator: str, env: dict[str, str] | None = None, args: tuple[str, ...] = (), start_timeout: float = 120
) -> Iterator[str]:
    """``mindprint serve`` (with ``args``) in its own process on a free loopback port, SQLite in
    ``home`` unless ``env`` names another database; yields its URL and stops it by its PID."""
    import sys

    port = free_port()
    environment = {
        **os.environ,
        "MINDPRINT_HOME": str(home),
        "MINDPRINT_DATABASE_URL": f"sqlite:///{home / 'platform.db'}",
        "MINDPRINT_OPERATORS": operator.lower(),
        **(env or {}),
    }
    log = home / "serve.log"
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "mindprint.cli", "serve", "--port", str(port), *args],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        up = lambda: httpx.get(f"{base}/health", timeout=1).status_code == 200  # noqa: E731
        _wait_until(up, "mindprint serve", server, log, start_timeout)
        yield base
    finally:
        _stop(server)


def port_sockets(port: int, state: str) -> set[str]:
    """Inodes of the loopback TCP sockets whose local port is ``port``, in ``state`` (``0A``
    listening, ``01`` established), from ``/proc/net/tcp``."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return {row[9] for row in rows if row[1] == f"0100007F:{port:04X}" and row[3] == state}


def socket_holders(inodes: set[str]) -> dict[int, int]:
    """PID -> how many of the socket ``inodes`` the process holds."""
    held: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
                n = sum(link.removeprefix("socket:[").removesuffix("]") in inodes for link in links)
                if n:
                    held[int(entry.name)] = n
    return held


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def sign_in(base: str, account: object) -> str:
    """A bearer token for ``account`` (an eth-account LocalAccount), by Sign-In with Ethereum."""
    from eth_account.messages import encode_defunct

    issued = httpx.post(f"{base}/auth/nonce", json={"address": account.address}).json()  # type: ignore[attr-defined]
    signed = account.sign_message(encode_defunct(text=issued["message"]))  # type: ignore[attr-defined]
    answer = httpx.post(
        f"{base}/auth/verify", json={"message": issued["message"], "signature": signed.signature.to_0x_hex()}
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])
