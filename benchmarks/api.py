"""Labeling API under load: verified submissions per second, latency, nothing lost.

    .venv/bin/python benchmarks/api.py [--per-level 64]

For SQLite and for PostgreSQL (a server started here on loopback), `mindprint serve` runs
in its own process; 8, 32 and 128 concurrent contributors (threads with their own wallet,
device key and signed samples of real Cyton EEG) submit. Every submission is fully
verified (signatures, recomputed features, liveness, replay index, attention) whatever
its verdict. Afterwards the database must hold exactly the accepted responses, each
with an anchor job.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import base64
import os
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import sqlalchemy as sa
from eth_account import Account
from eth_account.messages import encode_defunct

from mindprint.companion.client import PlatformClient
from mindprint.companion.samples import build_sample
from mindprint.companion.stream import upload_recorded
from mindprint.device.keys import DeviceKey
from mindprint.protocol.formats import device_typed_data
from tests.services import create_database, free_port, postgres_server
from tests.test_samples import T0, real_session


def token(http: httpx.Client, account) -> str:  # type: ignore[no-untyped-def]
    issued = http.post("/auth/nonce", json={"address": account.address}).json()
    signature = account.sign_message(encode_defunct(text=issued["message"])).signature.to_0x_hex()
    return str(
        http.post("/auth/verify", json={"message": issued["message"], "signature": signature}).json()["access_token"]
    )


def run_level(url: str, workdir: Path, contributors: int, total: int, operator, requester) -> dict[str, float]:  # type: ignore[no-untyped-def]
    per = max(1, total // contributors)
    with httpx.Client(base_url=url, timeout=300) as http:
        op = {"Authorization": f"Bearer {token(http, operator)}"}
        http.put(f"/accounts/{requester.address}/role", json={"role": "requester"}, headers=op)
        rq = {"Authorization": f"Bearer {token(http, requester)}"}
        project = http.post(
            "/projects",
            json={
                "name": f"load {contributors}",
                "label_schema": {"kind": "classes", "classes": ["a", "b"]},
                "redundancy": 1,
            },
            headers=rq,
        ).json()
        http.post(
            f"/projects/{project['id']}/items",
            json={"items": [{"content": {"text": f"item {i}"}} for i in range(contributors * per)]},
            headers=rq,
        )
        config = http.get("/config").json()
    prepared = []
    session_cache: dict[int, Path] = {}
    for c in range(contributors):
        wallet, key = Account.create(), DeviceKey.generate()
        session = real_session(workdir / f"c{contributors}-{c}", key, seconds=30, offset_seconds=30 + (c % 3) * 10)
        session_cache[c] = session
        prepared.append((wallet, key, session))

    def contributor(index: int) -> list[tuple[float, str]]:
        wallet, key, session = prepared[index]
        results: list[tuple[float, str]] = []
        with httpx.Client(base_url=url, timeout=600) as http:
            try:
                auth = {"Authorization": f"Bearer {token(http, wallet)}"}
            except (ValueError, KeyError):
                return [(0.0, "sign-in failed")] * per  # counted as errors
            deadline = int(time.time()) + 3600
            typed = device_typed_data(
                key.public_key, wallet.address, deadline, config["chain_id"], config["device_registry"]
            )
            signature = Account.sign_typed_data(wallet.key, full_message=typed).signature.to_0x_hex()
            http.post(
                "/devices", json={"device": key.device_id, "deadline": deadline, "signature": signature}, headers=auth
            )
            # the session streams once (encrypted chunks), before the timed submissions
            companion = PlatformClient(url, wallet, http=http)
            companion.token = auth["Authorization"].removeprefix("Bearer ")
            upload_recorded(companion, session, bytes.fromhex(config["platform_key"]))
            for n in range(per):
                task = http.get("/tasks/next", params={"project": project["id"]}, headers=auth).json()
                stimulus = T0 + (3 + 3 * n) * 1_000_000_000  # epochs of -1..+3 s inside the 30 s session
                signed = build_sample(
                    session,
                    key,
                    wallet,
                    task=task["id"],
                    label="a",
                    stimulus_ns=stimulus,
                    response_ns=stimulus + 600_000_000,
                    chain_id=config["chain_id"],
                )
                body = {
                    "sample": base64.b64encode(signed.block).decode(),
                    "device_signature": signed.device_signature.hex(),
                    "wallet_signature": "0x" + signed.wallet_signature.hex(),
                }
                start = time.perf_counter()
                response = http.post("/submissions", json=body, headers={**auth, "Idempotency-Key": f"{index}-{n}"})
                results.append((time.perf_counter() - start, response.json().get("status", str(response.status_code))))
        return results

    started = time.perf_counter()
    with ThreadPoolExecutor(contributors) as pool:
        outcomes = [r for rs in pool.map(contributor, range(contributors)) for r in rs]
    elapsed = time.perf_counter() - started
    latencies = np.array([o[0] for o in outcomes])
    statuses = [o[1] for o in outcomes]
    return {
        "submissions": len(outcomes),
        "accepted": statuses.count("accepted"),
        "rejected": statuses.count("rejected"),
        "errors": len(outcomes) - statuses.count("accepted") - statuses.count("rejected"),
        "per_second": len(outcomes) / elapsed,
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-level", type=int, default=64, help="submissions per concurrency level")
    parser.add_argument("--levels", default="8,32,128", help="concurrent contributors per level, comma-separated")
    parser.add_argument("--backends", default="sqlite,postgresql", help="database backends, comma-separated")
    args = parser.parse_args()
    rows = [
        "| backend | contributors | submissions | verified/s (wall, incl. client-side signing) | p50 | p99 | accepted / rejected / errors | nothing lost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    operator, requester = Account.create(), Account.create()
    with tempfile.TemporaryDirectory() as tmp, postgres_server(Path(tempfile.mkdtemp(prefix="mindprint-pg-"))) as pg:
        for backend in args.backends.split(","):
            home = Path(tmp) / backend
            url_db = f"sqlite:///{home / 'platform.db'}" if backend == "sqlite" else create_database(pg, "bench")
            port = free_port()
            env = {
                **os.environ,
                "MINDPRINT_HOME": str(home),
                "MINDPRINT_DATABASE_URL": url_db,
                "MINDPRINT_OPERATORS": operator.address.lower(),
            }
            server = subprocess.Popen(
                [sys.executable, "-m", "mindprint.cli", "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                base = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.3)
                accepted_total = 0
                for contributors in (int(level) for level in args.levels.split(",")):
                    result = run_level(
                        base,
                        Path(tmp) / f"{backend}-{contributors}",
                        contributors,
                        max(args.per_level, contributors),
                        operator,
                        requester,
                    )
                    accepted_total += int(result["accepted"])
                    engine = sa.create_engine(url_db.replace("postgresql+psycopg", "postgresql+psycopg"))
                    with engine.connect() as connection:
                        stored = connection.execute(
                            sa.text("SELECT count(*) FROM submissions WHERE status='accepted'")
                        ).scalar()
                        queued = connection.execute(sa.text("SELECT count(*) FROM jobs WHERE kind='anchor'")).scalar()
                    engine.dispose()
                    lost = (
                        "yes"
                        if stored == accepted_total == queued
                        else f"NO ({accepted_total} accepted, {stored} stored, {queued} queued)"
                    )
                    rows.append(
                        f"| {backend} | {contributors} | {result['submissions']} | {result['per_second']:.1f} | {result['p50']:.2f} s | {result['p99']:.2f} s | "
                        f"{result['accepted']} / {result['rejected']} / {result['errors']} | {lost} |"
                    )
                    print(rows[-1], flush=True)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
