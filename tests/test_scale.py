"""Many processes on one platform, everything real and on loopback, started by the test:
PostgreSQL, anvil, the js-ipfs daemon, two ``mindprint serve --no-worker`` replicas and two
``mindprint worker`` processes.

- EEG accepted through replica A and replayed through replica B is caught (the replay index
  is shared through the database);
- a burst of submissions spread over both replicas, with SIGKILL of replica B and of one
  worker in the middle: every submission that was answered, and every one retried on A
  with its Idempotency-Key, is kept; every accepted sample is pinned on the IPFS node and
  anchored exactly once;
- ``serve --workers 2`` (two API processes behind one port, the worker in the supervisor)
  accepts and anchors.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from sqlalchemy import text

from mindprint.companion.client import PlatformClient
from mindprint.companion.samples import build_sample
from mindprint.companion.stream import upload_recorded
from mindprint.device.keys import DeviceKey
from mindprint.labeling.store import make_engine
from mindprint.ledger.ipfs import KuboClient

from .services import ANVIL_KEY, _stop, _wait_until, create_database, free_port, ipfs_node
from .test_api import OPERATOR, REQUESTER
from .test_samples import T0, real_session


def _start(command: list[str], env: dict[str, str], log: Path, port: int | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mindprint.cli", *command], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    if port is not None:
        up = lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200  # noqa: E731
        _wait_until(up, " ".join(command[:1]), process, log, 120)
    return process


class Platform:
    """The processes of one platform; each stopped by its PID at the end."""

    def __init__(self, root: Path, database_url: str, rpc_url: str, ipfs_url: str) -> None:
        self.root = root
        self.rpc_url, self.ipfs_url = rpc_url, ipfs_url
        self.env = {
            **os.environ,
            "MINDPRINT_HOME": str(root / "home"),
            "MINDPRINT_DATABASE_URL": database_url,
            "MINDPRINT_OPERATORS": OPERATOR.address.lower(),
            "MINDPRINT_OPERATOR_KEY": ANVIL_KEY,
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def serve(self, name: str, *extra: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        command = ["serve", "--port", str(port), "--rpc-url", self.rpc_url, "--ipfs-url", self.ipfs_url, *extra]
        process = _start(command, self.env, self.root / f"{name}.log", port)
        self.processes.append(process)
        return f"http://127.0.0.1:{port}", process

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        command = ["worker", "--rpc-url", self.rpc_url, "--ipfs-url", self.ipfs_url, "--interval", "0.2"]
        process = _start(command, self.env, self.root / f"{name}.log")
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                _stop(process)


@pytest.fixture
def ipfs_url(tmp_path: Path) -> Iterator[str]:
    with ipfs_node(tmp_path / "ipfs") as url:
        yield url


def requester_project(url: str, items: int, redundancy: int = 2) -> None:
    """The test requester (made one by the operator) creates a yes/no project of ``items`` items."""
    with httpx.Client(base_url=url, timeout=60) as http:
        admin = PlatformClient(url, OPERATOR, http=http)
        admin.sign_in()
        http.put(
            f"/accounts/{REQUESTER.address}/role",
            json={"role": "requester"},
            headers={"Authorization": f"Bearer {admin.token}"},
        )
        requester = PlatformClient(url, REQUESTER, http=http)
        requester.sign_in()
        auth = {"Authorization": f"Bearer {requester.token}"}
        project = http.post(
            "/projects",
            json={
                "name": "scale",
                "label_schema": {"kind": "classes", "classes": ["yes", "no"]},
                "redundancy": redundancy,
            },
            headers=auth,
        ).json()
        body = {"items": [{"content": {"text": f"item {i}"}} for i in range(items)]}
        assert http.post(f"/projects/{project['id']}/items", json=body, headers=auth).status_code == 201


def _contributor(url: str, path: Path, offset_seconds: int):  # type: ignore[no-untyped-def]
    """A contributor on ``url``: signed in, device bound, a task leased, 8 s of real EEG
    uploaded, a signed sample of it; returns (client, signed, idempotency key)."""
    wallet, key = Account.create(), DeviceKey.generate()
    client = PlatformClient(url, wallet)
    client.sign_in()
    client.bind_device(key)
    config = client.config()
    task = client.next_task()
    assert task is not None
    session = real_session(path, key, seconds=8, offset_seconds=offset_seconds)
    upload_recorded(client, session, bytes.fromhex(config["platform_key"]))
    signed = build_sample(
        session, key, wallet, task=task["id"], label="yes", chain_id=config["chain_id"],
        stimulus_ns=T0 + 2 * 10**9, response_ns=T0 + 2 * 10**9 + 5 * 10**8,
    )  # fmt: skip
    return client, signed, uuid.uuid4().hex


def _wait_anchored_and_pinned(url: str, database_url: str, ipfs_url: str, accepted: set[str]) -> None:
    """Every accepted sample: a confirmed proof from the API, its sealed manifest pinned on
    the node, exactly one journal membership; every batch anchored once on chain."""
    from .test_ingest import admin_token

    engine = make_engine(database_url)
    deadline = time.monotonic() + 120
    confirmed: set[str] = set()
    auth = {"Authorization": f"Bearer {admin_token(url)}"}
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline and confirmed != accepted:
            for cid in accepted - confirmed:
                answer = http.get(f"/samples/{cid}/proof", headers=auth)
                if answer.status_code == 200 and answer.json()["state"] == "confirmed":
                    confirmed.add(cid)
            time.sleep(0.5)
    assert confirmed == accepted
    with engine.connect() as conn:
        manifests = dict(
            conn.execute(text("SELECT cid, sealed_manifest FROM submissions WHERE status = 'accepted'")).all()  # type: ignore[arg-type]
        )
        memberships = dict(conn.execute(text("SELECT cid, count(*) FROM anchor_members GROUP BY cid")).all())  # type: ignore[arg-type]
        roots = [row[0] for row in conn.execute(text("SELECT root FROM anchor_batches"))]
    engine.dispose()
    assert set(manifests) == accepted
    assert all(memberships[cid] == 1 for cid in accepted)
    with KuboClient(ipfs_url) as node:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pinned = {str(cid) for cid in node.pin_ls()}
            if set(manifests.values()) <= pinned:
                break
            time.sleep(0.5)
        assert set(manifests.values()) <= pinned, "accepted samples missing on the IPFS node"
    assert len(roots) == len(set(roots))


def _anchored_roots(rpc_url: str, home: Path) -> list[str]:
    from mindprint.ledger.chain import ChainClient, Deployment

    (deployment,) = (home / "platform").glob("deployment-*.json")
    chain = ChainClient.connect(rpc_url, ANVIL_KEY)
    contract = chain.contract("ProvenanceRegistry", Deployment.load(deployment).registry)
    return [e["args"]["root"].hex() for e in contract.events.Anchored.get_logs(from_block=0)]


def test_two_replicas_two_workers_replays_kills_and_exactly_once(
    tmp_path: Path, postgres_url: str, anvil_url: str, ipfs_url: str
) -> None:
    database_url = create_database(postgres_url, f"scale_{uuid.uuid4().hex[:12]}")
    platform = Platform(tmp_path, database_url, anvil_url, ipfs_url)
    try:
        a, _ = platform.serve("replica-a", "--no-worker", "--deploy")  # deploys the contracts
        b, replica_b = platform.serve("replica-b", "--no-worker")  # loads the deployment
        workers = [platform.worker("worker-1"), platform.worker("worker-2")]
        requester_project(a, items=16)
        # accepted through A, replayed (same EEG, another contributor and device) through B
        client, signed, key = _contributor(a, tmp_path / "original", offset_seconds=10)
        first = client.submit(signed, key)
        assert first["status"] == "accepted", first
        client, signed, key = _contributor(b, tmp_path / "replay", offset_seconds=10)
        replayed = client.submit(signed, key)
        assert replayed["status"] == "rejected" and any("replay" in r for r in replayed["reasons"]), replayed
        accepted = {first["sample_cid"]}
        # a burst over both replicas: twelve contributors, twelve distinct stretches of real EEG
        burst = [
            (_contributor(a if n % 2 else b, tmp_path / f"s{n}", offset_seconds=18 + 5 * n), a if n % 2 else b)
            for n in range(12)
        ]

        def send(entry):  # type: ignore[no-untyped-def]
            (client, signed, key), _ = entry
            try:
                return client.submit(signed, key)
            except Exception as err:  # the kill cuts some requests off
                return err

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(send, entry) for entry in burst]
            time.sleep(0.1)  # six submissions in flight on B (each ~50 ms of CPU on 2 shared cores)
            replica_b.send_signal(signal.SIGKILL)
            workers[0].send_signal(signal.SIGKILL)
            answers = [future.result() for future in futures]
        cut = 0
        for ((client, signed, key), _), answer in zip(burst, answers, strict=True):
            if not isinstance(answer, dict):  # retried on A with the same Idempotency-Key
                cut += 1
                retry = PlatformClient(a, client.wallet)
                retry.sign_in()
                answer = retry.submit(signed, key)
            assert answer["status"] == "accepted", answer
            accepted.add(answer["sample_cid"])
        assert len(accepted) == 13 and cut >= 1
        _wait_anchored_and_pinned(a, database_url, ipfs_url, accepted)
        roots = _anchored_roots(anvil_url, tmp_path / "home")
        assert len(roots) == len(set(roots))  # no root twice on chain
        print(f"cut off by the kill and retried: {cut} of 12")
    finally:
        platform.stop()


def test_serve_with_two_api_processes(tmp_path: Path, postgres_url: str, anvil_url: str, ipfs_url: str) -> None:
    database_url = create_database(postgres_url, f"workers_{uuid.uuid4().hex[:12]}")
    platform = Platform(tmp_path, database_url, anvil_url, ipfs_url)
    try:
        refused = subprocess.run(  # a JSON-RPC chain and no deployment: a clear error, nothing deployed
            [sys.executable, "-m", "mindprint.cli", "serve", "--rpc-url", anvil_url, "--port", str(free_port())],
            env=platform.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode != 0 and "mindprint chain deploy" in refused.stdout + refused.stderr
        deployment = tmp_path / "deployment.json"
        deploy = ["chain", "deploy", "--rpc-url", anvil_url, "--out", str(deployment)]
        subprocess.run(
            [sys.executable, "-m", "mindprint.cli", *deploy],
            env=platform.env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        url, server = platform.serve("serve", "--workers", "2", "--deployment", str(deployment))
        children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2, children  # two API processes under the supervisor
        requester_project(url, items=4)
        accepted = set()
        for n in range(3):
            client, signed, key = _contributor(url, tmp_path / f"s{n}", offset_seconds=10 + 8 * n)
            answer = client.submit(signed, key)
            assert answer["status"] == "accepted", answer
            accepted.add(answer["sample_cid"])
        client, signed, key = _contributor(url, tmp_path / "again", offset_seconds=10)  # a replay
        assert client.submit(signed, key)["status"] == "rejected"
        _wait_anchored_and_pinned(url, database_url, ipfs_url, accepted)
    finally:
        platform.stop()
