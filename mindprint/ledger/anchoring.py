"""Merkle-batched anchoring with a durable journal: idempotent, resumable, never twice.

State lives in one SQLite file (WAL) beside the blockstore:

- ``pending``: sample CIDs accepted and waiting for a batch (enqueue is idempotent);
- ``batches``: one row per batch — root, manifest CID, state (``built`` → ``sending``
  → ``confirmed``), transaction hash, block, chain id;
- ``members``: the samples of each batch with their index and inclusion proof.

The steps, each committed before the next starts, so that SIGKILL at any point and a
restart neither loses a sample nor anchors one twice:

1. *build*: take pending samples, build the tree, store the manifest block, write the
   batch and its members, delete them from ``pending`` — one SQLite transaction;
2. *send*: sign the transaction, record its hash (state ``sending``), broadcast;
3. *confirm*: receipt found → ``confirmed``. On restart a ``sending`` batch is resolved by
   asking the chain: the root is anchored → confirmed (with the receipt if the hash is
   known); not anchored and no receipt → sent again. The contract refuses a root twice.

:meth:`Anchorer.reconcile` re-anchors confirmed batches whose root a (development)
chain no longer holds, recording the new transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from multiformats import CID, multihash

from mindprint.core.errors import ChainError, LedgerError
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.chain import ChainClient
from mindprint.ledger.merkle import MerkleTree, sample_leaf, verify_proof

logger = logging.getLogger(__name__)

MANIFEST_TYPE = "mindprint/batch-manifest/v1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (cid TEXT PRIMARY KEY, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY, root TEXT UNIQUE NOT NULL, manifest TEXT NOT NULL, size INTEGER NOT NULL,
    state TEXT NOT NULL, tx_hash TEXT, block INTEGER, chain_id INTEGER, registry TEXT,
    created REAL NOT NULL, anchored REAL, history TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS members (
    cid TEXT PRIMARY KEY, batch INTEGER NOT NULL REFERENCES batches(id),
    position INTEGER NOT NULL, proof TEXT NOT NULL);
"""

__all__ = ["Anchorer", "InclusionProof", "open_journal", "read_proof"]


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Where a sample is anchored and how to check it."""

    sample: str
    root: str
    proof: list[str]
    manifest: str
    tx_hash: str | None
    block: int | None
    chain_id: int | None
    registry: str | None
    state: str

    def verify_offline(self) -> bool:
        leaf = sample_leaf(bytes(CID.decode(self.sample)))
        return verify_proof(leaf, [bytes.fromhex(p) for p in self.proof], bytes.fromhex(self.root))


class Anchorer:
    """Batch accepted samples and anchor their roots with one transaction per batch.

    Parameters
    ----------
    journal : Path
        SQLite file for the durable state.
    blockstore : Blockstore
        Where batch manifests are stored (and later pinned).
    client : ChainClient
        The chain; ``registry`` is the ProvenanceRegistry address.
    """

    def __init__(self, journal: Path, blockstore: Blockstore, client: ChainClient, registry: str) -> None:
        self.journal = Path(journal)
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.journal, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.blockstore = blockstore
        self.client = client
        self.registry = client.contract("ProvenanceRegistry", registry)

    def close(self) -> None:
        self.db.close()

    # -- queue -----------------------------------------------------------------------
    def enqueue(self, samples: Iterable[CID | str]) -> int:
        """Queue accepted samples (already queued or anchored ones are ignored)."""
        added = 0
        with self._transaction():
            for sample in samples:
                cid = _normalise(sample)
                if self.db.execute("SELECT 1 FROM members WHERE cid=?", (cid,)).fetchone():
                    continue
                added += self.db.execute("INSERT OR IGNORE INTO pending VALUES (?, ?)", (cid, time.time())).rowcount
        return added

    def pending_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def unfinished(self) -> bool:
        """Samples pending or a batch not confirmed (work a crash may have left half done)."""
        pending = self.db.execute("SELECT 1 FROM pending LIMIT 1").fetchone()
        return bool(pending or self.db.execute("SELECT 1 FROM batches WHERE state != 'confirmed' LIMIT 1").fetchone())

    def _transaction(self) -> sqlite3.Connection:
        return _Transaction(self.db)  # type: ignore[return-value]

    # -- steps -------------------------------------------------------------------------
    def build_batch(self, max_size: int = 1024) -> int | None:
        """Step 1: move up to ``max_size`` pending samples into a new batch."""
        with self._transaction():
            rows = self.db.execute("SELECT cid FROM pending ORDER BY added, cid LIMIT ?", (max_size,)).fetchall()
            if not rows:
                return None
            cids = [row[0] for row in rows]
            tree = MerkleTree.build([sample_leaf(bytes(CID.decode(c))) for c in cids])
            manifest = self.blockstore.put_node(
                {"type": MANIFEST_TYPE, "root": tree.root, "samples": [CID.decode(c) for c in cids], "count": len(cids)}
            )
            cursor = self.db.execute(
                "INSERT INTO batches (root, manifest, size, state, created) VALUES (?, ?, ?, 'built', ?)",
                (tree.root.hex(), str(manifest), len(cids), time.time()),
            )
            batch = int(cursor.lastrowid or 0)
            self.db.executemany(
                "INSERT INTO members VALUES (?, ?, ?, ?)",
                [(c, batch, i, json.dumps([p.hex() for p in tree.proof(i)])) for i, c in enumerate(cids)],
            )
            self.db.executemany("DELETE FROM pending WHERE cid=?", [(c,) for c in cids])
        logger.info("built batch %d: %d samples, root %s", batch, len(cids), tree.root.hex()[:16])
        return batch

    def _send(self, batch: int, root: str, manifest: str, size: int) -> None:
        digest = multihash.unwrap(CID.decode(manifest).digest)
        function = self.registry.functions.anchor(bytes.fromhex(root), bytes(digest), size)
        try:
            result = self.client.send(function)
        except ChainError as err:
            if err.reason and "already anchored" in err.reason:
                self._mark_confirmed(batch, *self._find_anchor(root))
                return
            raise
        self._mark_confirmed(batch, result.tx_hash, result.block_number)

    def _mark_confirmed(self, batch: int, tx_hash: str | None, block: int | None) -> None:
        row = self.db.execute("SELECT tx_hash, history FROM batches WHERE id=?", (batch,)).fetchone()
        history = json.loads(row[1])
        if tx_hash and tx_hash not in history:
            history.append(tx_hash)
        with self._transaction():
            self.db.execute(
                "UPDATE batches SET state='confirmed', tx_hash=coalesce(?, tx_hash), block=coalesce(?, block), "
                "chain_id=?, registry=?, anchored=?, history=? WHERE id=?",
                (tx_hash, block, self.client.chain_id, self.registry.address, time.time(), json.dumps(history), batch),
            )

    def anchor_batches(self) -> list[int]:
        """Steps 2–3 for every batch not yet confirmed; returns the batches confirmed."""
        done = []
        rows = self.db.execute(
            "SELECT id, root, manifest, size, state FROM batches WHERE state != 'confirmed' ORDER BY id"
        ).fetchall()
        for batch, root, manifest, size, state in rows:
            if state == "sending" and self._is_anchored(root):
                # sent before a crash: recover the transaction from the Anchored event
                self._mark_confirmed(batch, *self._find_anchor(root))
            else:
                with self._transaction():
                    self.db.execute("UPDATE batches SET state='sending' WHERE id=?", (batch,))
                self._send(batch, root, manifest, size)
            done.append(batch)
        return done

    def run(self, max_size: int = 1024) -> list[int]:
        """Build batches from everything pending and anchor every open batch."""
        while self.build_batch(max_size) is not None:
            pass
        return self.anchor_batches()

    def _find_anchor(self, root: str) -> tuple[str | None, int | None]:
        """Transaction hash and block of the Anchored event for ``root``, if found."""
        try:
            with self.client.serial():
                logs = self.registry.events.Anchored.get_logs(
                    argument_filters={"root": bytes.fromhex(root)}, from_block=0
                )
        except Exception as err:  # providers differ in what they raise for log queries
            logger.warning("cannot search Anchored events: %s", err)
            return None, None
        if not logs:
            return None, None
        entry = logs[-1]
        return entry["transactionHash"].to_0x_hex(), int(entry["blockNumber"])

    def _is_anchored(self, root: str) -> bool:
        return bool(self.client.call(self.registry.functions.is_anchored(bytes.fromhex(root))))

    def reconcile(self) -> list[int]:
        """Re-anchor confirmed batches the chain no longer holds (a reset dev chain)."""
        redone = []
        rows = self.db.execute(
            "SELECT id, root, manifest, size FROM batches WHERE state='confirmed' ORDER BY id"
        ).fetchall()
        for batch, root, manifest, size in rows:
            if not self._is_anchored(root):
                logger.warning("batch %d root %s missing on chain; re-anchoring", batch, root[:16])
                self._send(batch, root, manifest, size)
                redone.append(batch)
        return redone

    # -- lookups -----------------------------------------------------------------------
    def proof(self, sample: CID | str) -> InclusionProof:
        return read_proof(self.db, sample)

    def verify_on_chain(self, proof: InclusionProof) -> bool:
        """Ask the registry to check the proof against the anchored root."""
        leaf = sample_leaf(bytes(CID.decode(proof.sample)))
        function = self.registry.functions.verify_inclusion(
            bytes.fromhex(proof.root), leaf, [bytes.fromhex(p) for p in proof.proof]
        )
        return bool(self.client.call(function))

    def stats(self) -> dict[str, int]:
        counts = dict(self.db.execute("SELECT state, count(*) FROM batches GROUP BY state").fetchall())
        anchored = self.db.execute(
            "SELECT count(*) FROM members m JOIN batches b ON b.id=m.batch WHERE b.state='confirmed'"
        ).fetchone()[0]
        return {
            "pending": self.pending_count(),
            "anchored_samples": int(anchored),
            **{f"batches_{k}": int(v) for k, v in counts.items()},
        }


_PROOF_SQL = (
    "SELECT b.root, m.proof, b.manifest, b.tx_hash, b.block, b.chain_id, b.registry, b.state "
    "FROM members m JOIN batches b ON b.id = m.batch WHERE m.cid=?"
)


def read_proof(db: sqlite3.Connection, sample: CID | str) -> InclusionProof:
    """A sample's inclusion proof from an anchoring journal (no chain needed)."""
    cid = _normalise(sample)
    row = db.execute(_PROOF_SQL, (cid,)).fetchone()
    if row is None:
        if db.execute("SELECT 1 FROM pending WHERE cid=?", (cid,)).fetchone():
            raise LedgerError(f"sample {cid} is queued but not yet in a batch")
        raise LedgerError(f"sample {cid} was never queued for anchoring")
    return InclusionProof(cid, row[0], json.loads(row[1]), row[2], row[3], row[4], row[5], row[6], row[7])


def open_journal(path: Path) -> sqlite3.Connection:
    """Open an anchoring journal read-only (for exports that run beside a live worker)."""
    if not Path(path).exists():
        raise LedgerError(f"no anchoring journal at {path}: nothing was anchored here")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)


def _normalise(sample: CID | str) -> str:
    try:
        return str(CID.decode(str(sample)).set(base="base32"))
    except Exception as err:  # multiformats raises several unrelated types
        raise LedgerError(f"{sample!r} is not a CID") from err


class _Transaction:
    """``with`` block = one SQLite transaction (BEGIN IMMEDIATE … COMMIT / ROLLBACK)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, *exc: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - exercised by a subprocess test
    """``python -m mindprint.ledger.anchoring``: anchor everything pending, then exit.

    Environment: ``MINDPRINT_OPERATOR_KEY`` (hex private key). Arguments: see ``--help``.
    """
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Anchor pending samples (idempotent, resumable).")
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--state", required=True, type=Path, help="directory holding journal.sqlite and blocks/")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--enqueue-file", type=Path, help="file of sample CIDs (one per line) to enqueue first")
    args = parser.parse_args(argv)
    key = os.environ.get("MINDPRINT_OPERATOR_KEY")
    if not key:
        parser.error("MINDPRINT_OPERATOR_KEY is not set")
    client = ChainClient.connect(args.rpc_url, key)
    anchorer = Anchorer(args.state / "journal.sqlite", Blockstore(args.state / "blocks"), client, args.registry)
    if args.enqueue_file:
        anchorer.enqueue(line.strip() for line in args.enqueue_file.read_text().splitlines() if line.strip())
    anchorer.anchor_batches()  # finish whatever a previous run left open
    while anchorer.build_batch(args.batch_size) is not None:
        anchorer.anchor_batches()
    print(json.dumps(anchorer.stats()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
