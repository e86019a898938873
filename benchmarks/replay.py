"""The shared replay index (platform database): replays caught, false matches, lookup cost as
the history grows.

    .venv/bin/python benchmarks/replay.py [--sizes 1000,10000,100000] [--shared tests/data/eeg]

1. Robustness, on SQLite and on PostgreSQL: the first half of every real recording is
   accepted as consecutive 4 s samples (fingerprints and keys written as a submission
   writes them, each reaching back ``LEAD_SECONDS`` into the EEG before it); 4 s windows of that half, at 1 s steps plus a random sub-sample offset, are
   replayed seven ways (exact, rescaled and offset, noisy at 0.15 and 0.3 of the 1–45 Hz RMS,
   time-reversed, channels permuted, resampled to 256 Hz) and, for straddles, 1 s of other
   EEG followed by 3 s of the stored half; false matches are counted over 4 s windows of the
   other halves every 0.5 s. The same queries go through the previous design — one
   in-process index holding every fingerprint (exact search) — as the reference.
2. Cost, on PostgreSQL: the index is filled with ``--sizes`` accepted samples (distinct 4 s
   stretches of phase-randomised copies of the Cyton recording, written with COPY as
   ``benchmarks/api.py --history`` does), and the wall time of :func:`replay.lookup` is
   measured for 200 distinct real queries (no replay: the common case) after each fill,
   from one process. The last line: ``replay: lookup_ms_small=A lookup_ms_large=B
   growth=B/A missed=M false_matches=F`` (M: replays the database missed, every kind but
   the 0.3 noise; F: false matches on both backends).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # benchmarks/signal.py shadows `signal`

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator

import numpy as np
from scipy.signal import resample_poly
from sqlalchemy import text
from sqlalchemy.engine import Engine

from benchmarks.api import database as platform_database
from benchmarks.api import write_history
from mindprint.labeling.store import make_engine, migrate, sessions
from mindprint.labeling.verification.corpus import Recording, build_recordings
from mindprint.labeling.verification.uniqueness import (
    LEAD_SECONDS,
    FingerprintIndex,
    QuerySet,
    ReplayRule,
    query_set,
    stored_fingerprints,
)
from mindprint.platform.replay import add, lookup
from mindprint.signal.filters import design_filter, filter_offline
from tests.services import postgres_server

RULE = ReplayRule()


@contextlib.contextmanager
def database(backend: str, tmp: Path, pg: str | None) -> Iterator[Engine]:
    """A new, migrated platform database (``benchmarks/api.py``'s), as an engine."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    (tmp / name).mkdir()
    with platform_database(backend, tmp / name, pg, name) as url:
        engine = make_engine(url)
        migrate(engine)
        try:
            yield engine
        finally:
            engine.dispose()


def variants(x: np.ndarray, sf: float, start: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, float]]:
    width = int(4 * sf)
    window = x[:, start : start + width]
    noise = filter_offline(window, design_filter(sf, 1.0, 45.0)).std(axis=1, keepdims=True)
    out = {
        "exact": (window, sf),
        "rescaled": (window * rng.uniform(0.2, 5.0) + rng.normal(0, 1e-3), sf),
        "noisy 0.15": (window + rng.normal(0, 1, window.shape) * 0.15 * noise, sf),
        "noisy 0.3": (window + rng.normal(0, 1, window.shape) * 0.3 * noise, sf),
        "reversed": (window[:, ::-1].copy(), sf),
        "permuted": (window[rng.permutation(x.shape[0])], sf),
    }
    if abs(sf - 256.0) > 1:
        out["resampled"] = (resample_poly(window, 256, int(round(sf)), axis=1), 256.0)
    return out


def robustness(
    engine: Engine, reals: list[Recording], rng: np.random.Generator
) -> tuple[dict[str, list[bool]], dict[str, list[bool]], int, int, int]:
    """(caught per kind through the database, caught per kind by the reference, false matches,
    their reference count, distinct windows)."""
    reference = FingerprintIndex()
    names: dict[int, str] = {}
    with sessions(engine)() as db:
        for recording in reals:
            x, sf = recording.data, recording.sfreq
            width, half = int(4 * sf), x.shape[1] // 2
            for n, begin in enumerate(range(0, half - width + 1, width)):
                queries = query_set(x[:, begin : begin + width], sf)
                # stored as acceptance stores it: reaching back into the EEG before it
                lead = x[:, max(0, begin - int(LEAD_SECONDS * sf)) : begin]
                row = add(db, f"{recording.name}-{n}", *stored_fingerprints(x[:, begin : begin + width], sf, lead))
                reference.add_vectors(row.id, *queries.stored(RULE.hop))  # the previous design: epoch by epoch
                names[row.id] = recording.name
        db.commit()
    caught: dict[str, list[bool]] = {}
    caught_reference: dict[str, list[bool]] = {}
    false = false_reference = distinct = 0
    with sessions(engine)() as db:
        for recording in reals:
            x, sf = recording.data, recording.sfreq
            width, half = int(4 * sf), x.shape[1] // 2
            for start in range(int(sf), half - width - int(sf), int(sf)):
                start += int(rng.integers(1, int(0.5 * sf)))
                cases = variants(x, sf, start, rng)
                other = x[:, half + int(rng.integers(0, x.shape[1] - half - int(sf))) :][:, : int(sf)]
                cases["straddle"] = (np.concatenate([other, x[:, start : start + 3 * int(sf)]], axis=1), sf)
                for kind, (data, rate) in cases.items():
                    queries = query_set(data, rate)
                    sample = lookup(db, queries, "query", rule=RULE).sample
                    caught.setdefault(kind, []).append(sample is not None and sample.startswith(recording.name + "-"))
                    match = reference.search(queries)
                    caught_reference.setdefault(kind, []).append(
                        match is not None and names[match.owner] == recording.name
                    )
            for start in range(half, x.shape[1] - width, int(0.5 * sf)):
                queries = query_set(x[:, start : start + width], sf)
                distinct += 1
                false += lookup(db, queries, "query", rule=RULE).sample is not None
                false_reference += reference.search(queries) is not None
    return caught, caught_reference, false, false_reference, distinct


def lookup_times(engine: Engine, queries: list[QuerySet]) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, stored samples checked exactly per lookup): the candidates sharing ≥ 2
    keys by chance are what a lookup's own CPU grows with (each is decoded and compared)."""
    times: list[float] = []
    checked: list[int] = []
    with sessions(engine)() as db:
        for q in queries[:5]:
            lookup(db, q, "query", rule=RULE)  # warm the connection and the statement
        for q in queries:
            t0 = time.perf_counter()
            checked.append(lookup(db, q, "query", rule=RULE).candidates)
            times.append(time.perf_counter() - t0)
            db.commit()
    return 1000 * float(np.median(times)), 1000 * float(np.percentile(times, 99)), float(np.mean(checked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data" / "eeg")
    parser.add_argument("--sizes", default="1000,10000,100000", help="accepted samples in the index, ascending")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    rng = np.random.default_rng(12)
    reals = [r for r in build_recordings(args.shared, synthetic_seconds=0) if r.label == 1]
    rows = ["| measure | database | reference (one in-process exact index) |", "|---|---|---|"]
    caught_total = false_total = 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # PostgreSQL runs as its own user when this runs as root
        with postgres_server(tmp / "pg") as pg:
            for backend in args.backends.split(","):
                with database(backend, tmp, pg) as engine:
                    started = time.perf_counter()
                    caught, reference, false, false_ref, distinct = robustness(engine, reals, rng)
                    print(f"{backend}: robustness in {time.perf_counter() - started:.0f} s", flush=True)
                for kind, hits in caught.items():
                    ref = reference[kind]
                    rows.append(
                        f"| {backend}: replays caught, {kind} | {np.mean(hits):.1%} ({sum(hits)}/{len(hits)}) | "
                        f"{np.mean(ref):.1%} ({sum(ref)}/{len(ref)}) |"
                    )
                    if not kind.startswith("noisy 0.3"):
                        caught_total += len(hits) - sum(hits)
                rows.append(
                    f"| {backend}: false matches among distinct windows | {false}/{distinct} | {false_ref}/{distinct} |"
                )
                false_total += false
                print("\n".join(rows[-len(caught) - 1 :]), flush=True)
            # cost as the history grows (PostgreSQL, filled with COPY)
            x = reals[0].data
            distinct_queries = [query_set(x[:, s : s + 1000], 250.0) for s in rng.integers(0, x.shape[1] - 1000, 200)]
            figures = []
            with database("postgresql", tmp, pg) as engine:
                url = engine.url.render_as_string(hide_password=False)
                filled = 0
                for size in (int(s) for s in args.sizes.split(",")):
                    started = time.perf_counter()
                    write_history(url, size - filled)
                    filled = size
                    with engine.connect() as connection:
                        total = connection.execute(
                            text(
                                "SELECT pg_total_relation_size('replay_keys') + pg_total_relation_size('fingerprints')"
                            )
                        ).scalar()
                    p50, p99, checked = lookup_times(engine, distinct_queries)
                    figures.append((size, p50, p99))
                    rows.append(
                        f"| PostgreSQL, {size:,} accepted samples ({(total or 0) / 2**30:.2f} GiB): lookup of a distinct 4 s query, "
                        f"p50 / p99 | {p50:.1f} / {p99:.1f} ms | filled in {time.perf_counter() - started:.0f} s; "
                        f"{checked:.2f} stored samples checked exactly per lookup |"
                    )
                    print(rows[-1], flush=True)
    print("\n" + "\n".join(rows))
    small, large = figures[0][1], figures[-1][1]
    print(
        f"replay: lookup_ms_small={small:.1f} lookup_ms_large={large:.1f} growth={large / small:.2f} "
        f"missed={caught_total} false_matches={false_total}"
    )


if __name__ == "__main__":
    main()
