"""Bad input gets a clean 4xx and never crashes the platform.

- a real ``mindprint serve`` process survives JSON nested 100,000 deep and oversized bodies
  (declared and chunked) and still answers, without its memory growing with the body;
- inputs that used to answer 500 (malformed sample blocks, a task id of 2**64 − 1, a non-ASCII
  bearer token, an expiry without a time zone) are 4xx with problem+json;
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient
from multiformats import CID

from mindprint.api.app import create_app
from mindprint.api.limits import json_depth
from mindprint.api.server import free_port
from mindprint.core.ipld import cid_for_block, encode_block

from .test_api import _auth, _project, _settings, sign_in


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    home = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {**os.environ, "MINDPRINT_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "mindprint.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_deep_nesting_and_huge_bodies_do_not_kill_the_server(server: tuple[str, int]) -> None:
    url, pid = server
    rss_before = _rss_mib(pid)
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = httpx.post(f"{url}/auth/nonce", content=deep, headers={"content-type": "application/json"}, timeout=30)
    assert answer.status_code == 400 and "nested deeper" in answer.json()["detail"]
    assert answer.headers["content-type"] == "application/problem+json"
    deep_object = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    assert httpx.post(f"{url}/submissions", content=deep_object, timeout=30).status_code == 400

    declared = httpx.post(
        f"{url}/auth/nonce", content=b"x" * (64 * 2**20), headers={"content-type": "application/json"}, timeout=60
    )
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        for _ in range(400):
            yield b" " * 2**20

    streamed = httpx.post(
        f"{url}/auth/nonce", content=chunks(), headers={"content-type": "application/json"}, timeout=60
    )
    assert streamed.status_code == 413
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200 and health.headers["x-content-type-options"] == "nosniff"
    assert _rss_mib(pid) - rss_before < 100  # a 400 MiB body is never held


def test_json_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[["}]}') == 3
    assert json_depth(b'"\\"[[[["') == 0
    assert json_depth(b"[" * 40 + b"]" * 40) == 40


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app()
    settings = _settings(tmp_path, data_dir=tmp_path / "platform")
    app.state.settings = settings
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _block(value: Any) -> dict[str, str]:
    block = encode_block(value)
    assert cid_for_block(block)
    return {
        "sample": base64.b64encode(block).decode(),
        "device_signature": "00" * 64,
        "wallet_signature": "0x" + "00" * 65,
    }


GOOD = {
    "type": "mindprint/sample/v1",
    "task": 1,
    "label": "yes",
    "contributor": "0x" + "11" * 20,
    "device": bytes(32),
    "session": "s",
    "chunks": [CID.decode("bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")],
    "start": 0,
    "stop": 10,
    "stimulus_ns": 1,
    "response_ns": 2,
    "pipeline": "p",
    "features": {},
}

MALFORMED = [
    ("a list", [1, 2, 3]),
    ("a string", "sample"),
    ("missing keys", {"type": "mindprint/sample/v1", "task": 1}),
    ("string task id", {**GOOD, "task": "1"}),
    ("task id 2**64-1", {**GOOD, "task": 2**64 - 1}),
    ("negative task id", {**GOOD, "task": -1}),
    ("chunks not a list", {**GOOD, "chunks": "bafy"}),
    ("chunks of strings", {**GOOD, "chunks": ["bafy", "bafz"]}),
    ("no chunks", {**GOOD, "chunks": []}),
    ("stop before start", {**GOOD, "start": 10, "stop": 5}),
    ("bool start", {**GOOD, "start": True}),
    ("device too short", {**GOOD, "device": b"\x01"}),
    ("device a string", {**GOOD, "device": "00" * 32}),
    ("features a list", {**GOOD, "features": [1]}),
    ("label too large", {**GOOD, "label": "x" * 5000}),
    ("wrong type", {**GOOD, "type": "mindprint/chunk/v1"}),
]


@pytest.mark.parametrize(("name", "value"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_sample_blocks_are_422(client: TestClient, name: str, value: Any) -> None:
    _project(client, redundancy=1)
    wallet = Account.create()
    token = sign_in(client, wallet)
    client.get("/tasks/next", headers=_auth(token))
    answer = client.post("/submissions", json=_block(value), headers=_auth(token))
    assert answer.status_code == 422, (name, answer.status_code, answer.text)
    assert answer.headers["content-type"] == "application/problem+json"


def test_bytes_that_are_not_dag_cbor_are_422(client: TestClient) -> None:
    token = sign_in(client, Account.create())
    body = {"sample": base64.b64encode(b"\xff\x00garbage").decode(), "device_signature": "00" * 64}
    body["wallet_signature"] = "0x" + "00" * 65
    assert client.post("/submissions", json=body, headers=_auth(token)).status_code == 422


def test_non_ascii_bearer_token_is_401(client: TestClient) -> None:
    answer = client.get("/projects", headers={"Authorization": "Bearer é.ü".encode()})
    assert answer.status_code == 401


def test_expiry_without_time_zone_is_401(client: TestClient) -> None:
    wallet = Account.create()
    issued = client.post("/auth/nonce", json={"address": wallet.address}).json()
    naive = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).replace(tzinfo=None, microsecond=0).isoformat()
    lines = [
        line if not line.startswith("Expiration Time:") else f"Expiration Time: {naive}"
        for line in issued["message"].split("\n")
    ]
    message = "\n".join(lines)
    signature = wallet.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
    answer = client.post("/auth/verify", json={"message": message, "signature": signature})
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.replace("Sign in to mindprint.", "I agree to transfer all my funds."),
        lambda m: m.replace("Chain ID: 1", "Chain ID: 5"),
        lambda m: m.replace("URI: https://localhost", "URI: https://evil.example"),
        lambda m: m.replace("Version: 1", "Version: 2"),
        lambda m: m + "\nExpiration Time: 2999-01-01T00:00:00Z",  # a duplicated field
        lambda m: m.replace("Issued At: ", "Issued At: 1999-01-01T00:00:00Z\nX: "),
    ],
    ids=["statement", "chain-id", "uri", "version", "duplicate-expiry", "issued-at"],
)
def test_sign_in_accepts_only_the_message_issued(client: TestClient, edit: Any) -> None:
    wallet = Account.create()
    issued = client.post("/auth/nonce", json={"address": wallet.address}).json()
    message = edit(issued["message"])
    assert message != issued["message"]
    signature = wallet.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
    answer = client.post("/auth/verify", json={"message": message, "signature": signature})
    assert answer.status_code == 401, answer.text


def test_one_nonce_gives_one_token_under_concurrency(client: TestClient) -> None:
    import concurrent.futures

    wallet = Account.create()
    issued = client.post("/auth/nonce", json={"address": wallet.address}).json()
    signature = wallet.sign_message(encode_defunct(text=issued["message"])).signature.to_0x_hex()
    body = {"message": issued["message"], "signature": signature}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: client.post("/auth/verify", json=body).status_code, range(8)))
    assert sorted(codes) == [200] + [401] * 7, codes


def test_sign_ins_and_submissions_are_rate_limited(tmp_path: Path) -> None:
    settings = _settings(tmp_path, data_dir=tmp_path / "limited", nonces_per_minute=6.0, submissions_per_minute=4.0)
    from mindprint.platform import service

    service._platforms.pop(str(settings.platform_dir), None)
    app = create_app(sign_ins_per_minute=40.0)  # per client address: bursts of 10
    app.state.settings = settings
    with TestClient(app) as limited:
        wallet = Account.create()
        codes = [limited.post("/auth/nonce", json={"address": wallet.address}).status_code for _ in range(4)]
        assert codes[:2] == [200, 200] and codes[-1] == 429  # per address: bursts of 2
        refused = limited.post("/auth/nonce", json={"address": wallet.address})
        assert (
            int(refused.headers["retry-after"]) >= 1 and refused.headers["content-type"] == "application/problem+json"
        )
        token = sign_in(limited, Account.create())
        body = {"sample": "AA==", "device_signature": "00" * 64, "wallet_signature": "0x" + "00" * 65}
        answers = [limited.post("/submissions", json=body, headers=_auth(token)).status_code for _ in range(3)]
        assert answers[0] == 422 and answers[-1] == 429  # per contributor: a burst of 1
        others = [
            limited.post("/auth/nonce", json={"address": Account.create().address}).status_code for _ in range(12)
        ]
        assert 429 in others  # per client address, whatever the wallet


def test_database_is_private_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    import stat

    from mindprint.platform import service

    settings = _settings(tmp_path, data_dir=tmp_path / "p").model_copy(update={"token_secret": None})
    service._platforms.pop(str(settings.platform_dir), None)
    app = create_app()
    app.state.settings = settings
    with TestClient(app) as first:
        token = sign_in(first, Account.create())
    assert stat.S_IMODE((tmp_path / "platform.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "p").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "p" / "token.secret").stat().st_mode) == 0o600
    service._platforms.pop(str(settings.platform_dir), None)  # what a restart loses
    restarted = create_app()
    restarted.state.settings = settings
    with TestClient(restarted) as second:
        assert second.get("/projects", headers=_auth(token)).status_code == 200


def test_one_session_factory_per_engine(tmp_path: Path) -> None:
    """Requests share their engine's session factory: a ``sessionmaker`` made per request is a
    new ``Session`` class each time, whose event dispatch SQLAlchemy rebuilds on first use (16 %
    of an API process's CPU under load), and whose classes pile up until a GC pass."""
    from mindprint.labeling.store import make_engine, sessions

    engine, other = make_engine(f"sqlite:///{tmp_path / 'a.db'}"), make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    assert sessions(engine) is sessions(engine)
    assert sessions(other) is not sessions(engine) and sessions(other).kw["bind"] is other
    with sessions(engine)() as db:
        assert db.get_bind() is engine
