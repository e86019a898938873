"""Ingest over a 60-minute labeling session: cost per submission must not grow with the session.

    .venv/bin/python benchmarks/ingest.py [--minutes 60] [--every 10]

A real ``mindprint serve`` (embedded chain) runs on loopback in its own process. A
companion-shaped client, in another process, streams an 8-channel × 250 Hz session of
real Cyton EEG (the shipped excerpt, looped) in 0.5 s chunks — encrypted on the "device",
faster than real time (the platform checks timing and rate on the device clock, so
nothing is relaxed) — and submits a signed sample every ``--every`` seconds of session
time. Everything expensive on the client (writing and signing the session, cutting the
epochs, running the pipeline, signing the samples) is done before the clock starts.

Server CPU per submission is the CPU time of the server's request threads (the
pinning/anchoring worker thread excluded, read from ``/proc/<pid>/task``) across each
submission request, averaged over the submissions of minutes 1, 10 and 60. The
"floor" of the old design is shown beside it: the whole session travelled with every
sample, so upload and storage grew as samples × session length.

Last line::

    ingest: cpu_ratio_60_vs_1=X upload_ratio=Y storage_ratio=Z rejected_for_size=N
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import tempfile
import time
from typing import Any

import httpx
import numpy as np
from eth_account import Account

from benchmarks.api import write_history
from mindprint.companion.client import PlatformClient, PlatformError, server_timing
from mindprint.companion.samples import sign_sample
from mindprint.core.ipld import cid_text, decode_block, read_car
from mindprint.device.bridge import DataChunk
from mindprint.device.keys import DeviceKey
from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.device.session import SESSION_FILE, SIGNATURE_TYPE, SessionWriter, read_header
from mindprint.ledger.crypto import new_data_key, wrap_key
from mindprint.protocol.formats import seal_chunk

SFREQ = 250.0
CHUNK = 125  # 0.5 s, as the companion records
T0 = 1_700_000_000_000_000_000
TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(pid: int) -> float:
    """CPU seconds of the server's threads, the job worker's excluded."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that just ended
        if name.startswith("mindprint-work"):
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICK


def write_session(path: Path, key: DeviceKey, minutes: float) -> int:
    """Real Cyton EEG: the 30 s excerpt, then new 30 s stretches made from it (phase-randomised
    with the same random phases on every channel, so spectra and cross-spectra are kept and
    no stretch replays another — the replay index would rightly reject a plain loop)."""
    from mindprint.cli import sample_path_for_demo

    data = read_openbci_gui_csv(sample_path_for_demo()).data[1:9] * 1e-6
    data = data - data.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(data, axis=1)
    rng = np.random.default_rng(0)
    n_chunks = int(minutes * 60 * SFREQ / CHUNK)
    with SessionWriter.create(
        path,
        key,
        board_id=0,
        board_name="Cyton",
        sfreq=SFREQ,
        channels=("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"),
        types=("eeg",) * 8,
        units=("V",) * 8,
        chunk_seconds=CHUNK / SFREQ,
        fsync=False,
    ) as writer:
        per_loop = data.shape[1] // CHUNK
        stretch = data
        for seq in range(n_chunks):
            loop, at = divmod(seq, per_loop)
            if at == 0 and loop > 0:
                phases = np.exp(2j * np.pi * rng.random(spectrum.shape[1]))
                phases[0] = 1.0
                stretch = np.fft.irfft(spectrum * phases, n=data.shape[1], axis=1)
            block = stretch[:, at * CHUNK : (at + 1) * CHUNK]
            writer.append(DataChunk(t0_ns=T0 + round(seq * CHUNK / SFREQ * 1e9), samples=block, markers=()))
    return n_chunks


def client_process(
    url: str, server_pid: int, minutes: float, every: float, workdir: str, operator_key: str, out: Any, ready: Any
) -> None:
    """The companion-shaped load generator (its own process)."""
    operator, requester_wallet = Account.from_key(operator_key), Account.create()
    work = Path(workdir)
    wallet, key = Account.create(), DeviceKey.generate()
    session = work / "session"
    n_chunks = write_session(session, key, minutes)
    n_samples = int(minutes * 60 / every)
    with httpx.Client(base_url=url, timeout=120) as http:
        admin = PlatformClient(url, operator, http=http)
        admin.sign_in()
        http.put(
            f"/accounts/{requester_wallet.address}/role",
            json={"role": "requester"},
            headers={"Authorization": f"Bearer {admin.token}"},
        )
        requester = PlatformClient(url, requester_wallet, http=http)
        requester.sign_in()
        auth = {"Authorization": f"Bearer {requester.token}"}
        project = http.post(
            "/projects",
            json={"name": "hour", "label_schema": {"kind": "classes", "classes": ["yes", "no"]}, "redundancy": 1},
            headers=auth,
        ).json()
        for start in range(0, n_samples + 1, 500):  # one more: the warm-up's
            items = {
                "items": [{"content": {"text": f"item {i}"}} for i in range(start, min(n_samples + 1, start + 500))]
            }
            http.post(f"/projects/{project['id']}/items", json=items, headers=auth).raise_for_status()
    client = PlatformClient(url, wallet, timeout=120)
    client.sign_in()
    client.bind_device(key)
    chain_id = client.config()["chain_id"]
    platform_key = bytes.fromhex(client.config()["platform_key"])
    # before the clock: every sample (pipeline + both signatures) and every envelope
    contents = read_car((session / SESSION_FILE).read_bytes())
    header = contents.sections[0]
    signatures = {}
    chunks = []
    for section in contents.sections[1:]:
        value = decode_block(section.block)
        if value.get("type") == SIGNATURE_TYPE:
            signatures[value["signs"]] = bytes(value["signature"])
        else:
            chunks.append((section.cid, section.block, value))
    session_header = read_header(session)
    per_sample_chunks = round(every * SFREQ / CHUNK)
    samples = []
    for k in range(n_samples):
        stimulus = T0 + round((k * every + every / 2) * 1e9)
        window = [(cid, value) for cid, _, value in chunks[k * per_sample_chunks : (k + 1) * per_sample_chunks]]
        samples.append(
            sign_sample(
                session_header, window, key, wallet, task=k + 2, label="yes", chain_id=chain_id,
                stimulus_ns=stimulus, response_ns=stimulus + 600_000_000,
            )
        )  # fmt: skip
    session_id = decode_block(header.block)["session"]
    data_key = new_data_key()
    envelopes = [seal_chunk(data_key, session_id, cid, block) for cid, block, _ in chunks]
    session_bytes = (session / SESSION_FILE).stat().st_size
    warm_up(url, work, chain_id, platform_key, project["id"])
    ready.set()  # the main process measures the platform's storage from here
    time.sleep(2.0)

    started = time.perf_counter()
    uploaded = len(header.block)
    client.open_session(header.block, signatures[header.cid], wrap_key(data_key, platform_key, session_id))
    results = []
    rejected_for_size = 0
    sent = 0
    for k, signed in enumerate(samples):
        # stream the chunks up to the end of this sample's 10 s (its epoch lies inside)
        upto = min(n_chunks, (k + 1) * per_sample_chunks)
        while sent < upto:
            cid = chunks[sent][0]
            client.put_chunk(session_id, sent, cid_text(cid), signatures[cid], envelopes[sent])
            uploaded += len(envelopes[sent]) + 64 + len(cid_text(cid))
            sent += 1
        task = client.next_task(project["id"])
        assert task is not None and task["id"] == k + 2, task
        before = server_cpu(server_pid)
        wall = time.perf_counter()
        try:
            verdict = client.submit(signed)
        except PlatformError as err:
            if err.status == 413:
                rejected_for_size += 1
                continue
            raise
        # wall time only (``cpu-`` steps: the request thread's CPU)
        steps = {name: ms for name, ms in server_timing(client.last_timing).items() if not name.startswith("cpu-")}
        results.append(
            {
                "minute": (k * every + every) / 60,
                "cpu": server_cpu(server_pid) - before,
                "wall": time.perf_counter() - wall,
                "status": verdict["status"],
                "reasons": verdict["reasons"],
                "steps": steps,
            }
        )
        uploaded += len(signed.block) + 64 + 65
    out.put(
        {
            "results": results,
            "uploaded": uploaded,
            "session_bytes": session_bytes,
            "seconds": time.perf_counter() - started,
            "chunks": n_chunks,
            "rejected_for_size": rejected_for_size,
        }
    )


def warm_up(url: str, work: Path, chain_id: int, platform_key: bytes, project: int) -> None:
    """One submission by another contributor before the clock, so minute 1 is not JIT compilation."""
    from mindprint.companion.stream import upload_recorded

    wallet, key = Account.create(), DeviceKey.generate()
    client = PlatformClient(url, wallet, timeout=120)
    client.sign_in()
    client.bind_device(key)
    task = client.next_task(project)
    assert task is not None
    session = work / "warm-up"
    write_session(session, key, 0.25)
    upload_recorded(client, session, platform_key)
    from mindprint.companion.samples import build_sample

    stimulus = T0 + 5 * 10**9
    client.submit(
        build_sample(
            session, key, wallet, task=task["id"], label="yes", chain_id=chain_id,
            stimulus_ns=stimulus, response_ns=stimulus + 600_000_000,
        )
    )  # fmt: skip


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def database_bytes(path: Path) -> int:
    """The SQLite file's size once its write-ahead log is checkpointed into it."""
    import sqlite3

    with sqlite3.connect(path, timeout=60) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds of session time between samples")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="accepted samples of earlier sessions the platform already holds (their replay fingerprints, "
        "in the platform database `serve` reads at start-up); 0 = a fresh platform",
    )
    args = parser.parse_args()
    from tests.services import free_port

    operator = Account.create()

    with tempfile.TemporaryDirectory(prefix="mindprint-ingest-") as tmp:
        home = Path(tmp) / "home"
        if args.history:
            write_history(f"sqlite:///{home / 'platform.db'}", args.history)
        port = free_port()
        env = {**os.environ, "MINDPRINT_HOME": str(home), "MINDPRINT_OPERATORS": operator.address.lower()}
        server = subprocess.Popen(
            [sys.executable, "-m", "mindprint.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("mindprint serve did not start")
                time.sleep(0.2)
            context = mp.get_context("spawn")
            queue: Any = context.Queue()
            ready: Any = context.Event()
            client = context.Process(
                target=client_process,
                args=(url, server.pid, args.minutes, args.every, tmp, operator.key.hex(), queue, ready),
            )
            client.start()
            if not ready.wait(timeout=3600):
                raise SystemExit("the client did not get ready")
            blocks_before = directory_bytes(home / "platform" / "blocks")
            db_before = database_bytes(home / "platform.db")
            fingerprints_before = directory_bytes(home / "platform" / "fingerprints")
            report = queue.get(timeout=4 * 3600)
            client.join(timeout=60)
            time.sleep(3)  # let the worker pin and anchor what is queued
            blocks = directory_bytes(home / "platform" / "blocks") - blocks_before
            database = database_bytes(home / "platform.db") - db_before
            fingerprints = directory_bytes(home / "platform" / "fingerprints") - fingerprints_before
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    results = report["results"]
    session_bytes = report["session_bytes"]
    n = len(results)

    def window(minute: float) -> list[dict[str, Any]]:
        inside = [r for r in results if minute - 1 < r["minute"] <= minute]
        return inside or [min(results, key=lambda r: abs(r["minute"] - minute))]

    marks = sorted({1.0, min(10.0, args.minutes), args.minutes})
    # the median of each minute's submissions (the first one also pays for JIT warm-up)
    cpu = {m: float(np.median([r["cpu"] for r in window(m)])) for m in marks}
    wall = {m: float(np.median([r["wall"] for r in window(m)])) for m in marks}
    stored = blocks + database
    accepted = sum(r["status"] == "accepted" for r in results)
    print(f"platform history: {args.history} accepted samples held before the session starts")
    print(f"session: {args.minutes:g} min, {report['chunks']} chunks of 0.5 s, 8 ch × 250 Hz; {n} samples "
          f"({accepted} accepted, {n - accepted} rejected); streamed in {report['seconds']:.1f} s")  # fmt: skip
    reasons: dict[str, int] = {}
    for r in results:
        for reason in r["reasons"]:
            key = reason.split(":")[0][:60]
            reasons[key] = reasons.get(key, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:4]:
        print(f"  reason ×{count}: {reason}")
    print(f"{'minute':>8} {'server CPU / submission':>24} {'wall / submission':>18}   (medians over the minute)")
    steps = sorted(
        {name for r in results for name in r["steps"]},
        key=lambda n: list(results[-1]["steps"]).index(n) if n in results[-1]["steps"] else 99,
    )
    for m in marks:
        breakdown = " ".join(f"{n} {np.median([r['steps'].get(n, 0.0) for r in window(m)]):.0f}" for n in steps)
        print(f"{m:>8g} {cpu[m] * 1e3:>21.1f} ms {wall[m] * 1e3:>15.1f} ms   steps (ms): {breakdown}")
    old_upload = sum(session_bytes * min(1.0, r["minute"] / args.minutes) for r in results)
    print(f"session size        {session_bytes / 2**20:10.2f} MiB")
    print(f"bytes uploaded      {report['uploaded'] / 2**20:10.2f} MiB  (old design, session with every sample: "
          f"{old_upload / 2**20:,.0f} MiB)")  # fmt: skip
    print(f"bytes stored        {stored / 2**20:10.2f} MiB  (blocks {blocks / 2**20:.2f} MiB + database "
          f"{database / 2**20:.2f} MiB)")  # fmt: skip
    print(f"replay index files  {fingerprints / 2**20:10.2f} MiB  (fingerprints of accepted samples; not session "
          f"storage — the scale issue's replay index replaces them)")  # fmt: skip
    cpu_ratio = cpu[args.minutes] / cpu[1.0] if cpu[1.0] > 0 else float("nan")
    print(
        f"ingest: cpu_ratio_60_vs_1={cpu_ratio:.2f} upload_ratio={report['uploaded'] / session_bytes:.3f} "
        f"storage_ratio={stored / session_bytes:.3f} rejected_for_size={report['rejected_for_size']}"
    )


if __name__ == "__main__":
    main()
