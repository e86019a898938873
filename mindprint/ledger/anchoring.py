"""Merkle-batched anchoring with a durable journal: idempotent, resumable, never twice.

The journal is three tables of the platform database (PostgreSQL or SQLite), so every API
replica answers proofs and any number of workers anchor side by side; a standalone
journal (the demo, ``python -m mindprint.ledger.anchoring``) is a SQLite file:

- ``anchor_pending``: sample CIDs accepted and waiting for a batch (enqueue is idempotent);
- ``anchor_batches``: one row per batch — root, manifest CID, state (``built`` →
  ``sending`` → ``confirmed``), the process sending it, transaction hash, block, chain id;
- ``anchor_members``: the samples of each batch with their index and inclusion proof.

The steps, each committed before the next starts, so that SIGKILL at any point and a
restart neither loses a sample nor anchors one twice:

1. *build*: take pending samples (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN
   IMMEDIATE`` on SQLite: two workers never take the same one), build the tree, store the
   manifest block, write the batch and its members, delete them from pending — one
   transaction;
2. *send*: claim the batch (compare-and-set of its state and sender: one process sends a
   batch; a batch whose sender died on this host, or went silent for ``reclaim_seconds``,
   is taken over), sign the transaction, broadcast;
3. *confirm*: receipt found → ``confirmed``. A batch taken over is resolved by asking the
   chain: the root is anchored → confirmed (with the transaction from the ``Anchored``
   event); not anchored → sent again. The contract refuses a root twice.

:meth:`Anchorer.reconcile` re-anchors confirmed batches whose root a (development)
chain no longer holds, recording the new transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multiformats import CID, multihash
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from mindprint.core.errors import ChainError, LedgerError
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.chain import ChainClient
from mindprint.ledger.merkle import MerkleTree, sample_leaf, verify_proof
from mindprint.platform.runners import dead_on_this_host, runner_id

logger = logging.getLogger(__name__)

MANIFEST_TYPE = "mindprint/batch-manifest/v1"

metadata = MetaData()
pending = Table(
    "anchor_pending",
    metadata,
    Column("cid", String(120), primary_key=True),
    Column("added", Float, nullable=False, index=True),
)
batches = Table(
    "anchor_batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("root", String(64), unique=True, nullable=False),
    Column("manifest", String(120), nullable=False),
    Column("size", Integer, nullable=False),
    Column("state", String(16), nullable=False, index=True),  # built | sending | confirmed
    Column("sender", String(64), nullable=True),  # host:pid of the process sending it
    Column("claimed", Float, nullable=True),
    Column("tx_hash", String(80), nullable=True),
    Column("block", BigInteger, nullable=True),
    Column("chain_id", BigInteger, nullable=True),
    Column("registry", String(64), nullable=True),
    Column("created", Float, nullable=False),
    Column("anchored", Float, nullable=True),
    Column("history", Text, nullable=False, server_default="[]"),
)
members = Table(
    "anchor_members",
    metadata,
    Column("cid", String(120), primary_key=True),
    Column("batch", Integer, ForeignKey("anchor_batches.id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("proof", Text, nullable=False),
)

__all__ = ["Anchorer", "InclusionProof", "metadata", "open_journal", "read_proof"]


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
    journal : Engine | Path
        The platform database (its ``anchor_*`` tables come from the migrations), or a
        SQLite file for a standalone journal (tables created on first use).
    blockstore : Blockstore
        Where batch manifests are stored (and later pinned).
    client : ChainClient
        The chain; ``registry`` is the ProvenanceRegistry address.
    reclaim_seconds : float
        A batch left ``sending`` this long by a process of another host is taken over.
    """

    def __init__(
        self,
        journal: Engine | Path,
        blockstore: Blockstore,
        client: ChainClient,
        registry: str,
        *,
        reclaim_seconds: float = 300.0,
        name: str | None = None,
    ) -> None:
        self.engine = journal if isinstance(journal, Engine) else open_journal(Path(journal), create=True)
        self.blockstore = blockstore
        self.client = client
        self.registry = client.contract("ProvenanceRegistry", registry)
        self.reclaim_seconds = reclaim_seconds
        self.name = name or runner_id()

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # one writer: no lost update between workers
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def _read(self, statement: Any) -> Sequence[Any]:
        with self.engine.connect() as conn:
            return conn.execute(statement).all()

    # -- queue -----------------------------------------------------------------------
    def enqueue(self, samples: Iterable[CID | str]) -> int:
        """Queue accepted samples (already queued or anchored ones are ignored)."""
        cids = sorted({_normalise(sample) for sample in samples})
        if not cids:
            return 0
        now = time.time()
        with self._transaction() as conn:
            known = set(conn.execute(select(members.c.cid).where(members.c.cid.in_(cids))).scalars())
            known |= set(conn.execute(select(pending.c.cid).where(pending.c.cid.in_(cids))).scalars())
            fresh = [cid for cid in cids if cid not in known]
            if fresh:
                conn.execute(insert(pending), [{"cid": cid, "added": now} for cid in fresh])
        return len(fresh)

    def pending_count(self) -> int:
        return int(self._read(select(func.count()).select_from(pending))[0][0])

    def unfinished(self) -> bool:
        """Samples pending or a batch not confirmed (work a crash may have left half done)."""
        if self._read(select(pending.c.cid).limit(1)):
            return True
        return bool(self._read(select(batches.c.id).where(batches.c.state != "confirmed").limit(1)))

    # -- steps -------------------------------------------------------------------------
    def build_batch(self, max_size: int = 1024) -> int | None:
        """Step 1: move up to ``max_size`` pending samples into a new batch."""
        with self._transaction() as conn:
            query = select(pending.c.cid).order_by(pending.c.added, pending.c.cid).limit(max_size)
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            cids = list(conn.execute(query).scalars())
            if not cids:
                return None
            tree = MerkleTree.build([sample_leaf(bytes(CID.decode(c))) for c in cids])
            manifest = self.blockstore.put_node(
                {"type": MANIFEST_TYPE, "root": tree.root, "samples": [CID.decode(c) for c in cids], "count": len(cids)}
            )
            batch = int(
                conn.execute(
                    insert(batches)
                    .values(
                        root=tree.root.hex(),
                        manifest=str(manifest),
                        size=len(cids),
                        state="built",
                        created=time.time(),
                        history="[]",
                    )
                    .returning(batches.c.id)
                ).scalar_one()
            )
            conn.execute(
                insert(members),
                [
                    {"cid": c, "batch": batch, "position": i, "proof": json.dumps([p.hex() for p in tree.proof(i)])}
                    for i, c in enumerate(cids)
                ],
            )
            conn.execute(delete(pending).where(pending.c.cid.in_(cids)))
        logger.info("built batch %d: %d samples, root %s", batch, len(cids), tree.root.hex()[:16])
        return batch

    def _claim(self, batch: int, state: str, sender: str | None) -> bool:
        """Compare-and-set: this process sends ``batch`` if nobody took it meanwhile."""
        with self._transaction() as conn:
            taken = conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch,
                    batches.c.state == state,
                    func.coalesce(batches.c.sender, "") == (sender or ""),
                )
                .values(state="sending", sender=self.name, claimed=time.time())
            ).rowcount
        return bool(taken)

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
        with self._transaction() as conn:
            history = json.loads(conn.execute(select(batches.c.history).where(batches.c.id == batch)).scalar_one())
            if tx_hash and tx_hash not in history:
                history.append(tx_hash)
            values = {
                "state": "confirmed",
                "chain_id": self.client.chain_id,
                "registry": self.registry.address,
                "anchored": time.time(),
                "history": json.dumps(history),
            }
            if tx_hash:
                values["tx_hash"] = tx_hash
            if block is not None:
                values["block"] = block
            conn.execute(update(batches).where(batches.c.id == batch).values(**values))

    def _takeover(self, state: str, sender: str | None, claimed: float | None) -> bool:
        if state == "built":
            return True
        if sender == self.name:  # this process was interrupted mid-send (an exception)
            return True
        return dead_on_this_host(sender) or (claimed or 0.0) < time.time() - self.reclaim_seconds

    def anchor_batches(self) -> list[int]:
        """Steps 2–3 for every batch not yet confirmed that this process may send; returns
        the batches confirmed."""
        done = []
        rows = self._read(
            select(
                batches.c.id,
                batches.c.root,
                batches.c.manifest,
                batches.c.size,
                batches.c.state,
                batches.c.sender,
                batches.c.claimed,
            )
            .where(batches.c.state != "confirmed")
            .order_by(batches.c.id)
        )
        for batch, root, manifest, size, state, sender, claimed in rows:
            if not self._takeover(state, sender, claimed) or not self._claim(batch, state, sender):
                continue  # another live process is sending it
            if state == "sending" and self._is_anchored(root):
                # sent before a crash: recover the transaction from the Anchored event
                self._mark_confirmed(batch, *self._find_anchor(root))
            else:
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
        rows = self._read(
            select(batches.c.id, batches.c.root, batches.c.manifest, batches.c.size)
            .where(batches.c.state == "confirmed")
            .order_by(batches.c.id)
        )
        for batch, root, manifest, size in rows:
            if not self._is_anchored(root):
                logger.warning("batch %d root %s missing on chain; re-anchoring", batch, root[:16])
                self._send(batch, root, manifest, size)
                redone.append(batch)
        return redone

    # -- lookups -----------------------------------------------------------------------
    def proof(self, sample: CID | str) -> InclusionProof:
        return read_proof(self.engine, sample)

    def verify_on_chain(self, proof: InclusionProof) -> bool:
        """Ask the registry to check the proof against the anchored root."""
        leaf = sample_leaf(bytes(CID.decode(proof.sample)))
        function = self.registry.functions.verify_inclusion(
            bytes.fromhex(proof.root), leaf, [bytes.fromhex(p) for p in proof.proof]
        )
        return bool(self.client.call(function))

    def stats(self) -> dict[str, int]:
        """Pending samples, anchored samples and batches by state (a sum over batches, never
        a scan of every sample)."""
        rows = self._read(
            select(batches.c.state, func.count(), func.coalesce(func.sum(batches.c.size), 0)).group_by(batches.c.state)
        )
        anchored = sum(int(total) for state, _, total in rows if state == "confirmed")
        return {
            "pending": self.pending_count(),
            "anchored_samples": anchored,
            **{f"batches_{state}": int(count) for state, count, _ in rows},
        }

    def import_sqlite_journal(self, path: Path) -> int:
        """Copy a journal file of an older version (``anchoring.sqlite``) into these tables
        once; returns the batches copied. The file is renamed ``*.imported`` afterwards."""
        path = Path(path)
        if not path.exists():
            return 0
        old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {row[0] for row in old.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"pending", "batches", "members"} <= names:
                return 0
            old_batches = old.execute(
                "SELECT id, root, manifest, size, state, tx_hash, block, chain_id, registry, created, anchored, "
                "history FROM batches ORDER BY id"
            ).fetchall()
            old_members = old.execute("SELECT cid, batch, position, proof FROM members").fetchall()
            old_pending = old.execute("SELECT cid, added FROM pending").fetchall()
        finally:
            old.close()
        keys = (
            "id",
            "root",
            "manifest",
            "size",
            "state",
            "tx_hash",
            "block",
            "chain_id",
            "registry",
            "created",
            "anchored",
            "history",
        )
        with self._transaction() as conn:
            if conn.execute(select(batches.c.id).limit(1)).first() is not None:
                return 0  # these tables are in use: never mix two journals
            ids = {}
            for row in old_batches:
                values = dict(zip(keys, row, strict=True))
                old_id = values.pop("id")
                if values["state"] == "sending":
                    values["state"] = "built"  # resolved against the chain when sent again
                ids[old_id] = conn.execute(insert(batches).values(**values).returning(batches.c.id)).scalar_one()
            if old_members:
                conn.execute(
                    insert(members),
                    [{"cid": c, "batch": ids[b], "position": p, "proof": proof} for c, b, p, proof in old_members],
                )
            if old_pending:
                conn.execute(insert(pending), [{"cid": c, "added": a} for c, a in old_pending])
        path.rename(path.with_name(path.name + ".imported"))
        logger.warning("imported the anchoring journal %s (%d batches) into the platform database", path, len(ids))
        return len(ids)


def read_proof(journal: Engine, sample: CID | str) -> InclusionProof:
    """A sample's inclusion proof from an anchoring journal (no chain needed)."""
    cid = _normalise(sample)
    query = (
        select(
            batches.c.root,
            members.c.proof,
            batches.c.manifest,
            batches.c.tx_hash,
            batches.c.block,
            batches.c.chain_id,
            batches.c.registry,
            batches.c.state,
        )
        .join(batches, batches.c.id == members.c.batch)
        .where(members.c.cid == cid)
    )
    with journal.connect() as conn:
        row = conn.execute(query).first()
        if row is None:
            if conn.execute(select(pending.c.cid).where(pending.c.cid == cid)).first() is not None:
                raise LedgerError(f"sample {cid} is queued but not yet in a batch")
            raise LedgerError(f"sample {cid} was never queued for anchoring")
    return InclusionProof(cid, row[0], json.loads(row[1]), row[2], row[3], row[4], row[5], row[6], row[7])


def open_journal(path: Path, *, create: bool = False) -> Engine:
    """A standalone anchoring journal: a SQLite file (created with ``create``)."""
    path = Path(path)
    if not create and not path.exists():
        raise LedgerError(f"no anchoring journal at {path}: nothing was anchored here")
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    if create:
        metadata.create_all(engine)
    return engine


def _normalise(sample: CID | str) -> str:
    try:
        return str(CID.decode(str(sample)).set(base="base32"))
    except Exception as err:  # multiformats raises several unrelated types
        raise LedgerError(f"{sample!r} is not a CID") from err


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
