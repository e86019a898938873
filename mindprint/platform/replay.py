"""The replay index, shared by every API process and worker through the platform database.

Two tables hold it: ``fingerprints`` (an accepted sample's fingerprint vectors as int8, one
row per sample, in commit order) and ``replay_keys`` (the SimHash keys of those vectors,
``uniqueness.hash_keys``, one row per key and sample, primary key ``(key, fingerprint)``).
A query hashes its own fingerprints (≤ 8 channels, ~2,600 keys), looks the keys up through
the B-tree in one statement, and checks exactly — against the stored vectors, with the same
rule as before (several channels at one offset and direction) — only the few samples that
share the most keys. Nothing is held in a process's memory, nothing is loaded at start-up,
and a query costs index probes (log of the rows) plus a handful of candidates, whatever
the history: an engine every deployment already runs (SQLite or PostgreSQL), no service to add.

A query and the insert of an accepted sample's keys cannot be one lock across processes
without serialising every query. The check is optimistic: query (no lock), then, only for a
sample about to be accepted, in its commit transaction, take the ``replay_guard`` row lock
(an UPDATE: PostgreSQL row lock, SQLite write lock), check exactly the rows other processes
committed since the query read (a handful) and add this sample's rows. Two replicas
accepting the same EEG at the same moment are serialised there: the second sees the first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from mindprint.labeling.store import FingerprintRow, ReplayGuard, sessions
from mindprint.labeling.verification.uniqueness import (
    SEGMENT,
    QuerySet,
    ReplayMatch,
    ReplayRule,
    hash_keys,
)

logger = logging.getLogger(__name__)

CODE_SCALE = 200.0  # fingerprint components are within ±0.6: int8 steps of 0.005
CANDIDATES = 4  # samples sharing the most keys with a query that are checked exactly
MIN_HITS = 2  # ... if they share at least this many: one shared key is chance at scale
STRONG_HITS = 3  # beyond the first candidate, only those sharing this many are checked
# rows accepted by other processes while a sample was checked that the guard step checks
# exactly, one by one (~1.5 ms each); beyond that many, it asks the keys as a lookup does
FRESH_EXACT = 8
# Two shared keys are still chance often enough as the index fills (2.28 such samples per
# distinct query at 10^5, 0.14 with three), and an exact check costs ~2 ms; but a noisy or
# resampled replay may share only two with its source, which then leads the list: the first
# candidate is checked from two keys up, the others from three (benchmarks/replay.py).
BACKFILL_BATCH = 500

__all__ = [
    "FRESH_EXACT",
    "Lookup",
    "add",
    "backfill_keys",
    "check_fresh",
    "decode",
    "encode",
    "guard",
    "import_fingerprint_files",
    "lookup",
]


def encode(vectors: NDArray[np.float32], positions: NDArray[np.int64]) -> tuple[bytes, bytes]:
    """(int8 codes, int16 positions) of a sample's fingerprints."""
    codes = np.clip(np.rint(vectors * CODE_SCALE), -127, 127).astype(np.int8)
    return codes.tobytes(), np.asarray(positions, dtype=np.int16).tobytes()


def decode(codes: bytes, positions: bytes) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Unit vectors and positions back from :func:`encode` (cosine error below 10^-3)."""
    vectors = np.frombuffer(codes, dtype=np.int8).reshape(-1, SEGMENT).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(vectors), np.frombuffer(positions, dtype=np.int16).astype(np.int64)


# one bound parameter expands into the keys: an array on PostgreSQL, a JSON array through
# ``json_each`` on SQLite (one parameter, not thousands: the statement is prepared once)
_KEYS_SQL = {
    "postgresql": "SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k",
    "sqlite": "SELECT value AS k FROM json_each(:keys)",
}


def _keys_param(connection: Connection | Session, keys: NDArray[np.int64]) -> tuple[str, Any]:
    """(a SELECT of the keys, its parameter) for ``connection``'s database."""
    bind = connection.engine if isinstance(connection, Connection) else connection.get_bind()
    if bind.dialect.name == "postgresql":  # an array literal: a list would be adapted int by int (~3 ms)
        return _KEYS_SQL["postgresql"], "{" + ",".join(map(str, keys.tolist())) + "}"
    return _KEYS_SQL["sqlite"], json.dumps(keys.tolist())


def _insert_keys(connection: Connection | Session, fingerprint: int, keys: NDArray[np.int64]) -> None:
    selected, param = _keys_param(connection, keys)
    connection.execute(
        text(f"INSERT INTO replay_keys (key, fingerprint) SELECT q.*, :fp FROM ({selected}) AS q"),
        {"keys": param, "fp": fingerprint},
    )


def add(db: Session, sample: str, vectors: NDArray[np.float32], positions: NDArray[np.int64]) -> FingerprintRow:
    """Add an accepted sample's fingerprints and keys to ``db``'s transaction (under :func:`guard`)."""
    codes, stored_positions = encode(vectors, positions)
    row = FingerprintRow(sample=sample, codes=codes, positions=stored_positions)
    db.add(row)
    db.flush()  # the row id the keys point to
    _insert_keys(db, row.id, hash_keys(vectors))
    return row


def _search(
    rows: list[Any], queries: QuerySet, exclude: str, rule: ReplayRule
) -> tuple[ReplayMatch | None, str | None]:
    """Exact replay evidence among fingerprint ``rows`` (id, sample, codes, positions), one
    stored sample at a time in the given order: the first that the query replays."""
    for row_id, sample, codes, positions in rows:
        if sample == exclude:
            continue  # our own fingerprints (a retry of a sample whose commit was interrupted)
        match = rule.match_sample(queries, int(row_id), *decode(codes, positions))
        if match is not None:
            return match, sample
    return None, None


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a replay lookup found."""

    match: ReplayMatch | None  # the replay evidence, if any
    sample: str | None  # the stored sample it replays
    seen: int  # the newest fingerprint row this read saw (for :func:`check_fresh`)
    candidates: int  # stored samples fetched to be checked exactly (a lookup's own CPU grows with them)


def _candidates(db: Session, queries: QuerySet, where: str, head: str, tail: str, **extra: Any) -> Sequence[Any]:
    """The candidate stage of a lookup, run: the fingerprint rows sharing the most keys with
    ``queries`` among rows ``where`` allows, the first from MIN_HITS shared keys and the
    others from STRONG_HITS, as CTEs ``c`` and ``d`` between the statement's ``head`` (more
    CTEs, or nothing) and its ``tail`` (the SELECT over ``d``); ``extra`` binds the rest."""
    selected, param = _keys_param(db, queries.keys)
    return db.execute(
        text(
            f"WITH {head}c AS (SELECT fingerprint, count(*) AS hits, "
            "row_number() OVER (ORDER BY count(*) DESC, fingerprint DESC) AS rank "
            f"FROM ({selected}) AS q JOIN replay_keys ON replay_keys.key = q.k WHERE {where} "
            "GROUP BY fingerprint HAVING count(*) >= :hits ORDER BY rank LIMIT :n), "
            f"d AS (SELECT fingerprint, rank FROM c WHERE rank = 1 OR hits >= :strong) {tail}"
        ),
        {"keys": param, "n": CANDIDATES, "hits": MIN_HITS, "strong": STRONG_HITS, **extra},
    ).all()


def lookup(db: Session, queries: QuerySet, exclude: str, *, rule: ReplayRule) -> Lookup:
    """The samples sharing the most keys with ``queries`` checked exactly; ``exclude`` (the
    sample's own CID) is never evidence against itself. One statement: the newest row id
    (the guard's ``seen``), the candidates and their stored fingerprints.

    The keys are joined, not matched with ``IN``: they are distinct and sorted
    (:func:`~mindprint.labeling.verification.uniqueness.hash_keys`), so each shared key counts
    once and PostgreSQL probes the B-tree in key order; ``IN`` made it de-duplicate them
    first and probe in hash order — 17.3–18.1 against 14.6 ms of backend CPU per lookup at
    10^5 stored samples, the same rows (``benchmarks/README.md``, replay section)."""
    rows = _candidates(
        db,
        queries,
        "fingerprint <= (SELECT seen FROM s)",
        "s AS (SELECT coalesce(max(id), 0) AS seen FROM fingerprints), ",
        "SELECT s.seen, f.id, f.sample, f.codes, f.positions FROM s "
        "LEFT JOIN d ON 1 = 1 LEFT JOIN fingerprints f ON f.id = d.fingerprint ORDER BY d.rank",
    )
    seen = int(rows[0][0])
    found = [row[1:] for row in rows if row[1] is not None]  # most shared keys first
    match, sample = _search(found, queries, exclude, rule) if found else (None, None)
    return Lookup(match, sample, seen, len(found))


def guard(db: Session) -> None:
    """Take the cross-process replay lock for the rest of ``db``'s transaction."""
    db.execute(update(ReplayGuard).where(ReplayGuard.id == 1).values(accepted=ReplayGuard.accepted + 1))


def check_fresh(
    db: Session, seen: int, queries: QuerySet, cid: str, *, rule: ReplayRule
) -> tuple[ReplayMatch | None, str | None]:
    """Under :func:`guard`: the replay evidence among rows committed after ``seen`` (what other
    processes accepted while this sample was checked); and its sample. The candidates are
    chosen as :func:`lookup` chooses them among the rows before ``seen`` — up to FRESH_EXACT
    rows keyed here from their codes (:func:`_sharing_keys`), more (a busy platform accepting
    many samples a second) asked through the key table: the cost stays bounded however many
    were accepted meanwhile, and only rows sharing keys with the query are checked exactly."""
    rows: Sequence[Any] = db.execute(
        select(FingerprintRow.id, FingerprintRow.sample, FingerprintRow.codes, FingerprintRow.positions)
        .where(FingerprintRow.id > seen)
        .order_by(FingerprintRow.id)
        .limit(FRESH_EXACT + 1)
    ).all()
    if len(rows) <= FRESH_EXACT:
        rows = _sharing_keys(rows, queries)
    else:
        rows = _candidates(
            db,
            queries,
            "fingerprint > :seen",
            "",
            "SELECT f.id, f.sample, f.codes, f.positions FROM d JOIN fingerprints f ON f.id = d.fingerprint "
            "ORDER BY d.rank",
            seen=seen,
        )
    return _search(list(rows), queries, cid, rule) if rows else (None, None)


def _sharing_keys(rows: Sequence[Any], queries: QuerySet) -> list[Any]:
    """Of a few fingerprint ``rows`` (id, sample, codes, positions), those the key stage of
    :func:`lookup` would fetch, in its order: keyed here from their codes (~0.3 ms a row)
    rather than read, so that only these are checked exactly (~1 ms a row: most fresh rows
    under a busy guard are other contributors' EEG, sharing no keys)."""
    hits = [
        int(np.count_nonzero(np.isin(hash_keys(decode(codes, positions)[0]), queries.keys, assume_unique=True)))
        for _, _, codes, positions in rows
    ]
    ranked = sorted(
        (index for index in range(len(rows)) if hits[index] >= MIN_HITS),
        key=lambda index: (-hits[index], -int(rows[index][0])),  # the statement's order
    )[:CANDIDATES]
    return [rows[index] for rank, index in enumerate(ranked) if rank == 0 or hits[index] >= STRONG_HITS]


def backfill_keys(connection: Connection) -> int:
    """Key every fingerprint row that has no keys yet (the migration that added the table);
    returns the rows keyed."""
    last, keyed = 0, 0
    while True:
        rows = connection.execute(
            text("SELECT id, codes, positions FROM fingerprints WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": BACKFILL_BATCH},
        ).all()
        for row_id, codes, positions in rows:
            _insert_keys(connection, int(row_id), hash_keys(decode(codes, positions)[0]))
            last, keyed = int(row_id), keyed + 1
        if len(rows) < BACKFILL_BATCH:
            return keyed


def import_fingerprint_files(engine: Engine, root: Path) -> int:
    """Copy the ``.npz`` fingerprint files of an older version into the tables once (the
    folder is renamed ``*.imported``); returns the samples copied."""
    root = Path(root)
    files = sorted(root.glob("*.npz")) if root.is_dir() else []
    if not files:
        return 0
    with sessions(engine)() as db:
        if db.execute(select(FingerprintRow.id).limit(1)).first() is not None:
            return 0  # the table is in use: never mix
        copied = 0
        for path in files:
            try:
                with np.load(path) as stored:
                    vectors, positions = np.asarray(stored["vectors"], np.float32), stored["positions"]
            except (OSError, ValueError, KeyError) as err:
                logger.warning("skipping unreadable fingerprints %s: %s", path.name, err)
                continue
            add(db, path.stem, vectors, positions)
            copied += 1
        db.commit()
    root.rename(root.with_name(root.name + ".imported"))
    logger.warning("imported %d samples' fingerprints from %s into the platform database", copied, root)
    return copied
