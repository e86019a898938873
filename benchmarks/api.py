"""Labeling API under load: verified submissions per second, latency, server CPU, nothing lost.

    .venv/bin/python benchmarks/api.py [--per-level 128] [--repeats 3] [--levels 8,32,128] [--backends sqlite,postgresql]

For SQLite and for PostgreSQL (a server started here on loopback), ``mindprint serve
--workers 2`` runs in its own processes (two API processes on one port, the pinning/anchoring
worker in the supervising process, contracts on an anvil chain started here). For each
concurrency level, everything a contributor does before submitting is prepared **before the
clock starts**: ``--per-level`` new contributors each sign in, bind a device (EIP-712),
stream a signed session of real Cyton EEG (encrypted chunks), lease a task and sign one
sample for it. Then a **separate load-generator process** (it has its own interpreter: its
HTTP work does not share this one's GIL) fires the prebuilt submissions over N keep-alive
connections (plain HTTP/1.1 on asyncio, every request's bytes built before the clock);
nothing is signed or encoded while the clock runs. Every submission is fully verified
(signatures, pipeline re-run, liveness, replay query, attention) whatever its verdict; many
are rejected as replays because every contributor draws on the same 90 s recording — the
cost is the same.

Each cell runs ``--repeats`` bursts, each prepared just before it: verified/s is the median
burst's, with the slowest and the fastest (one burst of 128 varied by 2× between runs of
the same code). Server CPU per submission: the server processes' user + system time
(``/proc/<pid>/stat`` of every process holding a listening socket and of their supervisor,
all their threads, the anchoring worker included) **plus PostgreSQL's** (its postmaster and
every backend, live or exited) across the timed bursts, divided by the submissions; the
table shows the two parts (with SQLite the database works inside the API processes). "Lost": accepted responses
that are not accepted rows with an anchor job.

Last line (PostgreSQL, 32 clients)::

    api: verified_per_s=X p99_ms=Y cpu_ms_per_submission=Z after_1e5_ratio=R lost=N

``after_1e5_ratio``: verified/s at 32 clients on PostgreSQL after ``--history`` accepted
samples' fingerprints and replay keys are in the database (written with COPY, then
``serve`` restarted), over the same figure without them; ``nan`` unless ``--history`` is
given (default 0; 10^5 takes ~7 min to write and ~10 GB of disk).
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as a script, this folder comes first on sys.path and its signal.py would shadow the stdlib's
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import multiprocessing as mp
import os
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from eth_account import Account

from mindprint.companion.client import PlatformClient, server_timing
from mindprint.companion.samples import build_sample
from mindprint.companion.stream import upload_recorded
from mindprint.device.keys import DeviceKey
from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.device.session import DataChunk, SessionWriter
from mindprint.labeling.verification.corpus import same_phase_surrogate
from tests.conftest import CYTON_CSV
from tests.services import (
    create_database,
    mindprint_server,
    parent_pid,
    port_sockets,
    postgres_server,
    sign_in,
    socket_holders,
)
from tests.test_samples import T0, real_session

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _ticks(stat: list[str], children: bool = False) -> int:
    """utime + stime (and the reaped children's cutime + cstime) of a ``_stat``."""
    return int(stat[11]) + int(stat[12]) + (int(stat[13]) + int(stat[14]) if children else 0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far."""
    return _ticks(_stat(pid)) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process, of its reaped children (``cutime``/``cstime``) and of its live
    children: for PostgreSQL's postmaster, every backend's work so far, including backends
    that have exited."""
    total = _ticks(_stat(pid), children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = _stat(int(entry.name))
            except OSError:  # exited meanwhile
                continue
            if int(stat[1]) == pid:
                total += _ticks(stat, children=True)
    return total / TICKS


def database_pid(pg: str | None) -> int | None:
    """The postmaster of the PostgreSQL server at ``pg`` (the process listening on its port)."""
    if pg is None:
        return None
    port = int(pg.rsplit(":", 1)[1].split("/")[0])
    holders = socket_holders(port_sockets(port, "0A"))
    return min(holders) if holders else None


def server_pids(port: int) -> list[int]:
    """The PIDs of the processes holding a socket listening on 127.0.0.1:``port`` (the API
    processes) and of the `mindprint serve` supervisor that started them (it holds no socket;
    it runs the anchoring worker)."""
    pids = set(socket_holders(port_sockets(port, "0A")))
    if not pids:
        raise RuntimeError(f"no process listens on port {port}")
    parents = {parent_pid(pid) for pid in pids}
    return sorted(pids | {p for p in parents if b"mindprint.cli" in Path(f"/proc/{p}/cmdline").read_bytes()})


@functools.cache
def _cyton() -> np.ndarray:
    return read_openbci_gui_csv(CYTON_CSV).data[1:9] * 1e-6


def distinct_session(path: Path, key: DeviceKey, seed: int) -> Path:
    """An 8 s signed session of EEG no other contributor sends: an 8 s stretch of the Cyton
    recording with new Fourier phases, the same on every channel (its spectrum and its
    channels' covariation kept) — what liveness alone does not tell from real EEG on one
    epoch (``benchmarks/forgeries.py``). Here only so that most submissions are accepted and
    stored, as on a platform whose contributors are honest; the others replay one recording."""
    rng = np.random.default_rng(seed)
    start = 250 * int(rng.integers(5, 80))
    data = same_phase_surrogate(_cyton()[:, start : start + 2000], rng)
    with SessionWriter.create(
        path, key, board_id=0, board_name="Cyton", sfreq=250.0,
        channels=("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"), types=("eeg",) * 8, units=("V",) * 8,
        chunk_seconds=1.0, fsync=False,
    ) as writer:  # fmt: skip
        for second in range(8):
            chunk = data[:, second * 250 : (second + 1) * 250]
            writer.append(DataChunk(t0_ns=T0 + second * 1_000_000_000, samples=chunk, markers=()))
    return path


def prepare(
    url: str, workdir: Path, count: int, requester: Any, operator: Any, distinct: bool = False
) -> list[tuple[str, dict[str, str]]]:
    """``count`` contributors, each with one signed sample ready to submit (untimed): of one
    recording (mostly replays of each other), or ``distinct`` (mostly accepted)."""
    with httpx.Client(base_url=url, timeout=300) as http:
        op = {"Authorization": f"Bearer {sign_in(url, operator)}"}
        http.put(f"/accounts/{requester.address}/role", json={"role": "requester"}, headers=op).raise_for_status()
        rq = {"Authorization": f"Bearer {sign_in(url, requester)}"}
        project = http.post(
            "/projects",
            json={"name": f"load {count}", "label_schema": {"kind": "classes", "classes": ["a", "b"]}, "redundancy": 1},
            headers=rq,
        ).json()
        http.post(
            f"/projects/{project['id']}/items",
            json={"items": [{"content": {"text": f"item {i}"}} for i in range(count)]},
            headers=rq,
        ).raise_for_status()
        config = http.get("/config").json()

    def one(index: int) -> tuple[str, dict[str, str]]:
        wallet, key = Account.create(), DeviceKey.generate()
        session = (
            distinct_session(workdir / f"c{index}", key, seed=zlib.crc32(f"{workdir}/{index}".encode()))
            if distinct
            else real_session(workdir / f"c{index}", key, seconds=8, offset_seconds=30 + (index % 40) * 1)
        )
        client = PlatformClient(url, wallet, timeout=300)
        client.sign_in()
        client.bind_device(key)
        upload_recorded(client, session, bytes.fromhex(config["platform_key"]))
        task = client.next_task(project["id"])
        assert task is not None
        stimulus = T0 + 2 * 1_000_000_000  # the epoch −1…+3 s inside the 8 s session
        signed = build_sample(
            session, key, wallet, task=task["id"], label="a", stimulus_ns=stimulus,
            response_ns=stimulus + 600_000_000, chain_id=config["chain_id"],
        )  # fmt: skip
        body = {
            "sample": base64.b64encode(signed.block).decode(),
            "device_signature": signed.device_signature.hex(),
            "wallet_signature": "0x" + signed.wallet_signature.hex(),
        }
        assert client.token is not None
        client.close()
        return client.token, body

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def fire(url: str, prepared: list[tuple[str, dict[str, str]]], clients: int, out: Any) -> None:
    """The load generator (its own process): ``clients`` keep-alive connections submit the
    prebuilt bodies, each request's bytes built before the clock starts. Plain HTTP/1.1 over
    asyncio streams in one thread, like wrk: 0.4–0.5 ms of CPU per submission during the
    burst. httpx from 32 threads took 17.8 ms per submission for its whole process on these
    same two cores (start-up included, which costs this generator 7.5–11 ms of a 256-burst):
    some 7–10 ms taken from the server it was measuring."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    requests = []
    for index, (token, body) in enumerate(prepared):
        payload = json.dumps(body).encode()
        head = (
            f"POST /submissions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Idempotency-Key: bench-{index}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        requests.append(head.encode() + payload)
    started, cpu = time.perf_counter(), time.process_time()
    outcomes = asyncio.run(_fire(host, int(port), requests, clients))
    out.put((time.perf_counter() - started, outcomes, time.process_time() - cpu))


async def _fire(host: str, port: int, requests: list[bytes], clients: int) -> list[tuple[float, str, str]]:
    lanes = await asyncio.gather(*(_lane(host, port, requests[i::clients]) for i in range(clients)))
    return [outcome for lane in lanes for outcome in lane]


async def _lane(host: str, port: int, requests: list[bytes]) -> list[tuple[float, str, str]]:
    """One client: its requests one after another on one connection (reopened after an
    error); per request (seconds, status, the ``Server-Timing`` header)."""
    results: list[tuple[float, str, str]] = []
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    for request in requests:
        start = time.perf_counter()
        try:
            if connection is None:
                connection = await asyncio.open_connection(host, port)
            reader, writer = connection
            writer.write(request)
            await writer.drain()
            code = int((await reader.readuntil(b"\r\n")).split()[1])
            length, timing = 0, ""
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                elif name.strip().lower() == b"server-timing":
                    timing = value.decode().strip()
            answer = json.loads(await reader.readexactly(length)) if length else {}
            status = answer.get("status", str(code)) if isinstance(answer, dict) else str(code)
        except (
            UnicodeDecodeError,
            OSError,
            EOFError,
            ValueError,
            IndexError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as err:
            status, timing = f"error: {type(err).__name__}", ""
            if connection is not None:
                connection[1].close()
            connection = None
        results.append((time.perf_counter() - start, status, timing))
    if connection is not None:
        connection[1].close()
    return results


def run_level(
    url: str,
    pids: list[int],
    workdir: Path,
    clients: int,
    count: int,
    operator: Any,
    repeats: int = 1,
    db_pid: int | None = None,
    distinct: bool = False,
) -> dict[str, Any]:
    """``repeats`` bursts of ``count`` prebuilt submissions over ``clients`` connections, each burst
    prepared (untimed) just before it runs: verified/s is the median burst's, with the
    slowest and fastest; latencies, CPU and statuses are over every burst. ``db_pid``: the
    PostgreSQL postmaster, whose backends' CPU counts as the server's."""
    bursts, latencies, statuses, split, generator_seconds = [], [], [], [0.0] * len(pids), 0.0
    timings: list[tuple[str, str]] = []  # (status, Server-Timing) of verified submissions
    database_seconds = 0.0
    for burst in range(repeats):
        prepared = prepare(url, workdir / f"burst{burst}", count, Account.create(), operator, distinct)
        queue: Any = mp.get_context("spawn").Queue()
        load = mp.get_context("spawn").Process(target=fire, args=(url, prepared, clients, queue))
        cpu_before = {pid: cpu_seconds(pid) for pid in pids}
        database_before = tree_cpu_seconds(db_pid) if db_pid else 0.0
        load.start()
        elapsed, outcomes, generator_cpu = queue.get()
        split = [total + cpu_seconds(pid) - cpu_before[pid] for total, pid in zip(split, pids, strict=True)]
        database_seconds += tree_cpu_seconds(db_pid) - database_before if db_pid else 0.0
        load.join()
        bursts.append(len(outcomes) / elapsed)
        generator_seconds += generator_cpu
        latencies += [o[0] for o in outcomes]
        statuses += [o[1] for o in outcomes]
        timings += [(o[1], o[2]) for o in outcomes if o[1] in ("accepted", "rejected")]
    times = np.array(latencies)
    errors = Counter(s for s in statuses if s not in ("accepted", "rejected"))
    return {
        "submissions": len(statuses),
        "accepted": statuses.count("accepted"),
        "rejected": statuses.count("rejected"),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "per_second": float(np.median(bursts)),
        "bursts": bursts,
        "p50": float(np.percentile(times, 50)) * 1000,
        "p99": float(np.percentile(times, 99)) * 1000,
        "api_ms": 1000 * sum(split) / len(statuses),
        "db_ms": 1000 * database_seconds / len(statuses),  # PostgreSQL's backends (SQLite: inside api_ms)
        "cpu_ms": 1000 * (sum(split) + database_seconds) / len(statuses),
        "cpu_split": split,  # seconds per server process (the API processes and their supervisor)
        "generator_ms": 1000 * generator_seconds / len(statuses),  # the load generator's CPU per submission
        "step_cpu_ms": step_cpu([timing for _, timing in timings]),
        # the request thread's CPU for one submission of each verdict: an accepted one also
        # stores its fingerprints and keys (most of this benchmark's submissions are replays)
        "by_verdict": {
            verdict: (step_cpu(of), len(of))
            for verdict in ("accepted", "rejected")
            if (of := [timing for status, timing in timings if status == verdict])
        },
    }


def step_cpu(timings: list[str]) -> dict[str, float]:
    """Mean CPU ms per submission of each step of ``submit`` on the request's own thread
    (the ``cpu-<step>`` entries of the server's ``Server-Timing``), over verified submissions.
    What the API processes spend beyond their sum is the HTTP stack, authentication, request
    parsing and the event loop."""
    sums: dict[str, float] = {}
    for header in timings:
        for name, ms in server_timing(header).items():
            if name.startswith("cpu-"):
                sums[name.removeprefix("cpu-")] = sums.get(name.removeprefix("cpu-"), 0.0) + ms
    return {name: total / max(1, len(timings)) for name, total in sums.items()}


def split_line(result: dict[str, Any]) -> str:
    bursts = " / ".join(f"{b:.1f}" for b in result["bursts"])
    cpu = " / ".join(f"{s:.1f}" for s in result["cpu_split"])
    return (
        f"  verified/s per burst: {bursts}; CPU seconds per server process: {cpu}; "
        f"API processes {result['api_ms']:.1f} + database {result['db_ms']:.1f} ms CPU per submission; "
        f"load generator {result['generator_ms']:.1f} ms CPU per submission"
        + (f"; errors: {dict(result['error_kinds'])}" if result["errors"] else "")
        + "\n  request thread CPU per step (ms): "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in result["step_cpu_ms"].items())
        + f" (sum {sum(result['step_cpu_ms'].values()):.1f} of the API processes' {result['api_ms']:.1f})"
        + "".join(
            f"\n  {verdict} ({n}): request thread CPU {sum(steps.values()):.1f} ms — "
            + ", ".join(f"{name} {ms:.2f}" for name, ms in steps.items() if ms >= 0.05)
            for verdict, (steps, n) in result["by_verdict"].items()
        )
    )


@contextlib.contextmanager
def database(backend: str, home: Path, pg: str | None, name: str | None = None) -> Iterator[str]:
    """The URL of a new platform database: a SQLite file in ``home``, or database ``name`` on
    the PostgreSQL server ``pg``."""
    if backend == "sqlite":
        yield f"sqlite:///{home / 'platform.db'}"
    else:
        assert pg is not None
        yield create_database(pg, name or f"bench_{os.getpid()}")


def count_lost(url_db: str, accepted_total: int) -> int:
    """Accepted answers missing as accepted rows or as anchor jobs."""
    engine = sa.create_engine(url_db)
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT count(*) FROM submissions WHERE status='accepted'")).scalar()
        queued = connection.execute(sa.text("SELECT count(*) FROM jobs WHERE kind='anchor'")).scalar()
    engine.dispose()
    return abs(accepted_total - int(stored or 0)) + abs(accepted_total - int(queued or 0))


def write_history(url_db: str, samples: int) -> None:
    """``samples`` earlier accepted samples in the replay index as acceptance leaves them:
    fingerprint rows and their keys (each reaching 1 s back into the copy, as a sample's lead
    since 2026-12-05). Each is a distinct 4 s stretch of a phase-randomised
    copy of the Cyton recording (EEG's spectrum, new phases). Written with COPY, the key
    table's primary key dropped during the load and rebuilt after (a sorted build)."""
    from mindprint.cli import sample_path_for_demo
    from mindprint.device.openbci import read_openbci_gui_csv
    from mindprint.labeling.store import make_engine, migrate
    from mindprint.labeling.verification.uniqueness import LEAD_SECONDS, hash_keys, stored_fingerprints
    from mindprint.platform.replay import encode

    data = read_openbci_gui_csv(sample_path_for_demo()).data[1:9] * 1e-6
    spectrum = np.fft.rfft(data - data.mean(axis=1, keepdims=True), axis=1)
    per_copy = data.shape[1] // 1000  # non-overlapping 4 s epochs of each copy
    rng = np.random.default_rng(1)
    engine = make_engine(url_db)
    migrate(engine)
    started = time.perf_counter()
    with engine.begin() as connection:
        first = int(connection.exec_driver_sql("SELECT coalesce(max(id), 0) FROM fingerprints").scalar() or 0) + 1
        connection.exec_driver_sql("ALTER TABLE replay_keys DROP CONSTRAINT replay_keys_pkey")
    # two connections: one COPY each, at the same time
    rows_connection, keys_connection = engine.raw_connection(), engine.raw_connection()
    rows_cursor, keys_cursor = rows_connection.cursor(), keys_connection.cursor()
    with (
        rows_cursor.copy("COPY fingerprints (id, sample, codes, positions) FROM STDIN") as rows,  # type: ignore[attr-defined]
        keys_cursor.copy("COPY replay_keys (key, fingerprint) FROM STDIN") as keys,  # type: ignore[attr-defined]
    ):
        n = 0
        while n < samples:
            phases = np.exp(2j * np.pi * rng.random(spectrum.shape[1]))
            phases[0] = 1.0
            copy = np.fft.irfft(spectrum * phases, n=data.shape[1], axis=1)
            for k in range(min(per_copy, samples - n)):
                # as acceptance stores it: the epoch and up to 1 s of the EEG before it
                lead = copy[:, max(0, k * 1000 - int(LEAD_SECONDS * 250)) : k * 1000]
                vectors, stored = stored_fingerprints(copy[:, k * 1000 : (k + 1) * 1000], 250.0, lead, 4)
                codes, positions = encode(vectors, stored)
                row_id = first + n
                rows.write_row((row_id, f"history-{n:07d}", codes, positions))
                for key in hash_keys(vectors).tolist():
                    keys.write_row((key, row_id))
                n += 1
                if n % 10000 == 0:
                    print(f"  history: {n} of {samples} ({time.perf_counter() - started:.0f} s)", flush=True)
    rows_connection.commit()
    keys_connection.commit()
    rows_connection.close()
    keys_connection.close()
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE replay_keys ADD PRIMARY KEY (key, fingerprint)")
        connection.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('fingerprints', 'id'), {first + samples})")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE replay_keys")
        connection.exec_driver_sql("VACUUM ANALYZE fingerprints")
    print(f"  history: {samples} samples written in {time.perf_counter() - started:.0f} s", flush=True)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-level", type=int, default=128, help="prebuilt submissions per concurrency level")
    parser.add_argument("--levels", default="8,32,128", help="concurrent clients per level, comma-separated")
    parser.add_argument("--backends", default="sqlite,postgresql", help="database backends, comma-separated")
    parser.add_argument("--workers", type=int, default=2, help="API processes (`serve --workers`)")
    parser.add_argument("--repeats", type=int, default=3, help="bursts per cell (verified/s: the median burst)")
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="then PostgreSQL at 32 clients again, every contributor's EEG distinct (mostly accepted)",
    )
    parser.add_argument(
        "--history", type=int, default=0, help="accepted samples in the index for the run after them (PostgreSQL, 32)"
    )
    args = parser.parse_args()
    from tests.services import ANVIL_KEY, anvil_node

    rows = [
        "| backend | clients | submissions | verified/s (median burst; slowest–fastest) | p50 | p99 "
        "| server CPU / submission (API + database) | accepted / rejected / errors | lost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    operator = Account.create()
    last: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    lost_total = 0
    serve_args = ("--workers", str(args.workers))
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)  # PostgreSQL runs as its own user when this runs as root
        backends = args.backends.split(",")
        pg_context = postgres_server(Path(tmp) / "pg") if "postgresql" in backends else contextlib.nullcontext()
        with pg_context as pg, anvil_node(Path(tmp)) as rpc:
            for backend in backends:
                home = Path(tmp) / backend
                with database(backend, home, pg) as url_db:
                    env = {
                        "MINDPRINT_DATABASE_URL": url_db,
                        "MINDPRINT_SIGN_INS_PER_MINUTE": "0",
                        "MINDPRINT_OPERATOR_KEY": ANVIL_KEY,
                    }
                    with mindprint_server(
                        home, operator.address, env, (*serve_args, "--rpc-url", rpc, "--deploy")
                    ) as base:
                        pids = server_pids(int(base.rsplit(":", 1)[1]))
                        db_pid = database_pid(pg) if backend == "postgresql" else None
                        accepted_total = 0
                        for clients in (int(level) for level in args.levels.split(",")):
                            result = run_level(base, pids, Path(tmp) / f"{backend}-{clients}", clients,
                                               max(args.per_level, clients), operator, args.repeats, db_pid)  # fmt: skip
                            accepted_total += int(result["accepted"])
                            lost = count_lost(url_db, accepted_total)
                            lost_total += lost
                            rows.append(row(backend, clients, result, lost))
                            print(rows[-1] + "\n" + split_line(result), flush=True)
                            if backend == "postgresql" and clients == 32:
                                last = {**result, "lost": lost}
                        if backend == "postgresql" and args.distinct:
                            result = run_level(base, pids, Path(tmp) / "distinct", 32, max(args.per_level, 32),
                                               operator, args.repeats, db_pid, distinct=True)  # fmt: skip
                            accepted_total += int(result["accepted"])
                            lost = count_lost(url_db, accepted_total)
                            lost_total += lost
                            rows.append(row(f"{backend}, distinct EEG", 32, result, lost))
                            print(rows[-1] + "\n" + split_line(result), flush=True)
                    if backend == "postgresql" and args.history:
                        write_history(url_db, args.history)
                        loading = time.perf_counter()
                        restart = (*serve_args, "--rpc-url", rpc)
                        with mindprint_server(home, operator.address, env, restart, start_timeout=3600) as base:
                            print(f"  restarted with the history in {time.perf_counter() - loading:.0f} s", flush=True)
                            pids = server_pids(int(base.rsplit(":", 1)[1]))
                            after = run_level(base, pids, Path(tmp) / "after", 32, max(args.per_level, 32), operator,
                                              args.repeats, database_pid(pg))  # fmt: skip
                            rows.append(row(f"{backend}, after {args.history:,} samples", 32, after, 0))
                            print(rows[-1] + "\n" + split_line(after), flush=True)
    print("\n" + "\n".join(rows))
    if last is None:  # the named cell was not run: report the last one, saying so
        print("(PostgreSQL at 32 clients was not among the levels run)")
        last = {"per_second": float("nan"), "p99": float("nan"), "cpu_ms": float("nan"), "lost": lost_total}
    ratio = after["per_second"] / last["per_second"] if after else float("nan")
    if after and args.history < 100_000:  # the figure is after 10^5: say what was run instead
        print(f"after {args.history:,} accepted samples: ratio {ratio:.2f} (not 10^5: after_1e5_ratio=nan)")
        ratio = float("nan")
    print(
        f"api: verified_per_s={last['per_second']:.1f} p99_ms={last['p99']:.0f} "
        f"cpu_ms_per_submission={last['cpu_ms']:.0f} after_1e5_ratio={ratio:.2f} lost={last['lost']}"
    )


def row(backend: str, clients: int, result: dict[str, Any], lost: int) -> str:
    return (
        f"| {backend} | {clients} | {result['submissions']} | {result['per_second']:.1f} "
        f"({min(result['bursts']):.1f}–{max(result['bursts']):.1f}) | "
        f"{result['p50']:.0f} ms | {result['p99']:.0f} ms | {result['cpu_ms']:.0f} ms "
        f"({result['api_ms']:.0f} + {result['db_ms']:.0f}) | "
        f"{result['accepted']} / {result['rejected']} / {result['errors']} | {lost} |"
    )


if __name__ == "__main__":
    main()
