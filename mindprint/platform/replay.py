"""The replay index shared by every API process and worker.

The durable form is the platform database's ``fingerprints`` table — one row per accepted
sample, appended in commit order. Each process keeps a faiss index in memory
(:class:`FingerprintIndex`, an HNSW graph: a query is sublinear in what it holds) and
reads the rows it has not seen before each query, so a replay of EEG accepted by any
replica is caught by every replica; the cost of catching up is the rows added since the
last query, never the history.

A query and the insert of an accepted sample's fingerprints cannot be one lock across
processes without serialising every replay query (~36 ms at 10^5 vectors). Instead the
check is optimistic: query the local index (no database lock), then, only for a sample
about to be accepted, in its commit transaction, take the ``replay_guard`` row lock (an
UPDATE: PostgreSQL row lock, SQLite write lock), check the rows other processes committed
since the local index was read (a handful, searched exactly) and add this sample's row.
Two replicas accepting the same EEG at the same moment are serialised there: the second
sees the first's row and rejects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from mindprint.labeling.store import FingerprintRow, ReplayGuard, sessions
from mindprint.labeling.verification.uniqueness import SEGMENT, FingerprintIndex, ReplayMatch

logger = logging.getLogger(__name__)

CODE_SCALE = 200.0  # fingerprint components are within ±0.6: int8 steps of 0.005
SYNC_BATCH = 2000

__all__ = ["check_fresh", "decode", "encode", "guard", "import_fingerprint_files", "sync"]


def encode(vectors: NDArray[np.float32], positions: NDArray[np.int64]) -> tuple[bytes, bytes]:
    """(int8 codes, int16 positions) of a sample's fingerprints."""
    codes = np.clip(np.rint(vectors * CODE_SCALE), -127, 127).astype(np.int8)
    return codes.tobytes(), np.asarray(positions, dtype=np.int16).tobytes()


def decode(codes: bytes, positions: bytes) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Unit vectors and positions back from :func:`encode` (cosine error below 10^-3)."""
    vectors = np.frombuffer(codes, dtype=np.int8).reshape(-1, SEGMENT).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(vectors), np.frombuffer(positions, dtype=np.int16).astype(np.int64)


def sync(platform: Any) -> int:
    """Add the rows committed since this process last looked (call under ``platform.lock``);
    returns how many samples were added. Owners are row ids: unique across processes."""
    assert platform.engine is not None
    added = 0
    with sessions(platform.engine)() as db:
        while True:
            rows = db.execute(
                select(FingerprintRow.id, FingerprintRow.sample, FingerprintRow.codes, FingerprintRow.positions)
                .where(FingerprintRow.id > platform.log_position)
                .order_by(FingerprintRow.id)
                .limit(SYNC_BATCH)
            ).all()
            for row_id, sample, codes, positions in rows:
                vectors, starts = decode(codes, positions)
                platform.index.add_vectors(row_id, vectors, starts)
                platform.owners[row_id] = sample
                platform.log_position = row_id
            added += len(rows)
            if len(rows) < SYNC_BATCH:
                return added


def guard(db: Session) -> None:
    """Take the cross-process replay lock for the rest of ``db``'s transaction."""
    db.execute(update(ReplayGuard).where(ReplayGuard.id == 1).values(accepted=ReplayGuard.accepted + 1))


def check_fresh(
    db: Session, seen: int, epoch: NDArray[np.floating], sfreq: float, cid: str, *, like: FingerprintIndex
) -> tuple[ReplayMatch | None, str | None]:
    """Under :func:`guard`: the replay evidence among rows committed after ``seen`` (what other
    processes accepted while this sample was checked), searched exactly; and its sample."""
    rows = db.execute(
        select(FingerprintRow.id, FingerprintRow.sample, FingerprintRow.codes, FingerprintRow.positions)
        .where(FingerprintRow.id > seen)
        .order_by(FingerprintRow.id)
    ).all()
    rows = [row for row in rows if row.sample != cid]
    if not rows:
        return None, None
    fresh = FingerprintIndex(
        hop=like.hop, threshold=like.threshold, min_channels=like.min_channels, min_fraction=like.min_fraction
    )
    owners = {}
    for row_id, sample, codes, positions in rows:
        fresh.add_vectors(row_id, *decode(codes, positions))
        owners[row_id] = sample
    match = fresh.query(epoch, sfreq)
    return match, owners.get(match.owner) if match else None


def import_fingerprint_files(engine: Engine, root: Path) -> int:
    """Copy the ``.npz`` fingerprint files of an older version into the table once (the
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
                    codes, positions = encode(stored["vectors"], stored["positions"])
            except (OSError, ValueError, KeyError) as err:
                logger.warning("skipping unreadable fingerprints %s: %s", path.name, err)
                continue
            db.add(FingerprintRow(sample=path.stem, codes=codes, positions=positions))
            copied += 1
        db.commit()
    root.rename(root.with_name(root.name + ".imported"))
    logger.warning("imported %d samples' fingerprints from %s into the platform database", copied, root)
    return copied
