"""Anchoring: batches, proofs, crashes at every step, chain resets, SIGKILL on anvil."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from mindprint.core.errors import LedgerError
from mindprint.core.ipld import cid_for_block
from mindprint.ledger.anchoring import Anchorer
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.chain import ChainClient, deploy_contracts

from .services import ANVIL_KEY


def _samples(n: int, seed: int = 0) -> list[str]:
    return [str(cid_for_block(f"sample-{seed}-{i}".encode(), "dag-cbor")) for i in range(n)]


def _anchorer(tmp_path: Path, chain: ChainClient, registry: str) -> Anchorer:
    return Anchorer(tmp_path / "journal.sqlite", Blockstore(tmp_path / "blocks"), chain, registry)


def _anchored_events(chain: ChainClient, registry: str) -> list[str]:
    contract = chain.contract("ProvenanceRegistry", registry)
    return [e["args"]["root"].hex() for e in contract.events.Anchored.get_logs(from_block=0)]


def test_batches_and_proofs(chain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deployment = deploy_contracts(chain)
    anchorer = _anchorer(tmp_path, chain, deployment.registry)
    samples = _samples(2100)
    assert anchorer.enqueue(samples) == 2100
    assert anchorer.enqueue(samples[:50]) == 0  # duplicates ignored
    assert anchorer.run(max_size=1024) == [1, 2, 3]
    assert anchorer.enqueue(samples[:50]) == 0  # already anchored: ignored
    assert anchorer.stats()["anchored_samples"] == 2100 and anchorer.pending_count() == 0
    for sample in (samples[0], samples[1023], samples[1024], samples[-1]):
        proof = anchorer.proof(sample)
        assert proof.state == "confirmed" and proof.tx_hash and proof.chain_id == chain.chain_id
        assert proof.verify_offline() and anchorer.verify_on_chain(proof)
        manifest = anchorer.blockstore.get_node(proof.manifest)
        assert bytes.fromhex(proof.root) == manifest["root"]
    assert len(_anchored_events(chain, deployment.registry)) == 3


def test_crash_between_build_and_send_resumes(chain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deployment = deploy_contracts(chain)
    first = _anchorer(tmp_path, chain, deployment.registry)
    first.enqueue(_samples(100))
    batch = first.build_batch()
    first.close()  # "killed" after step 1
    second = _anchorer(tmp_path, chain, deployment.registry)
    assert second.anchor_batches() == [batch]
    assert second.anchor_batches() == []
    assert len(_anchored_events(chain, deployment.registry)) == 1


def test_crash_after_broadcast_recovers_the_transaction(chain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deployment = deploy_contracts(chain)
    first = _anchorer(tmp_path, chain, deployment.registry)
    first.enqueue(_samples(10))
    batch = first.build_batch()
    root, manifest, size = journal_rows(first, "SELECT root, manifest, size FROM anchor_batches WHERE id=:b", b=batch)[
        0
    ]
    journal_rows(first, "UPDATE anchor_batches SET state='sending' WHERE id=:b", b=batch)
    from multiformats import CID, multihash

    digest = bytes(multihash.unwrap(CID.decode(manifest).digest))
    sent = chain.send(first.registry.functions.anchor(bytes.fromhex(root), digest, size))  # broadcast, then "killed"
    first.close()
    second = _anchorer(tmp_path, chain, deployment.registry)
    second.anchor_batches()
    proof = second.proof(_samples(10)[3])
    assert proof.state == "confirmed" and proof.tx_hash == sent.tx_hash and proof.block == sent.block_number
    assert len(_anchored_events(chain, deployment.registry)) == 1


def journal_rows(anchorer: Anchorer, sql: str, **params: object) -> list[tuple]:  # type: ignore[type-arg]
    """Rows of ``sql`` run on an anchorer's journal (committed)."""
    with anchorer.engine.begin() as conn:
        result = conn.execute(text(sql), params)
        return [tuple(row) for row in result] if result.returns_rows else []


def _snapshot(chain: ChainClient) -> object:
    if chain.embedded_tester is not None:
        return chain.embedded_tester.take_snapshot()
    return chain.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[attr-defined]


def _revert(chain: ChainClient, snapshot: object) -> None:
    if chain.embedded_tester is not None:
        chain.embedded_tester.revert_to_snapshot(snapshot)
    else:
        assert chain.w3.provider.make_request("evm_revert", [snapshot])["result"]  # type: ignore[attr-defined]
    chain._nonce = None


def test_reset_chain_is_reanchored(chain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deployment = deploy_contracts(chain)
    anchorer = _anchorer(tmp_path, chain, deployment.registry)
    anchorer.enqueue(_samples(20))
    snapshot = _snapshot(chain)
    anchorer.run()
    before = anchorer.proof(_samples(20)[0])
    _revert(chain, snapshot)  # the dev chain forgot the anchor
    assert not anchorer.verify_on_chain(before)
    assert anchorer.reconcile() == [1]
    after = anchorer.proof(_samples(20)[0])
    assert after.tx_hash and after.root == before.root
    assert anchorer.verify_on_chain(after)
    history = journal_rows(anchorer, "SELECT history FROM anchor_batches WHERE id=1")[0][0]
    assert before.tx_hash in history and after.tx_hash in history
    assert anchorer.reconcile() == []


def test_sigkill_at_any_step_anchors_each_sample_exactly_once(anvil_url: str, tmp_path: Path) -> None:
    client = ChainClient.connect(anvil_url, ANVIL_KEY)
    deployment = deploy_contracts(client)
    samples = _samples(3000, seed=9)
    queue = tmp_path / "samples.txt"
    queue.write_text("\n".join(samples))
    command = [
        sys.executable,
        "-m",
        "mindprint.ledger.anchoring",
        "--rpc-url",
        anvil_url,
        "--registry",
        deployment.registry,
        "--state",
        str(tmp_path / "state"),
        "--batch-size",
        "64",
    ]
    env = {**os.environ, "MINDPRINT_OPERATOR_KEY": ANVIL_KEY}
    kills = 0
    for delay in (1.5, 0.7, 0.3):
        process = subprocess.Popen(
            [*command, "--enqueue-file", str(queue)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    # the restart is given the same queue (enqueueing is idempotent): on a loaded machine the
    # killed runs may not have got as far as enqueueing anything
    final = subprocess.run(
        [*command, "--enqueue-file", str(queue)], env=env, capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stderr
    assert kills >= 1
    anchorer = _anchorer(tmp_path / "state", client, deployment.registry)
    stats = anchorer.stats()
    assert stats["anchored_samples"] == 3000 and stats["pending"] == 0
    batches = journal_rows(anchorer, "SELECT root FROM anchor_batches")
    events = _anchored_events(client, deployment.registry)
    assert sorted(events) == sorted(r[0] for r in batches)  # every batch anchored once, nothing else
    members = journal_rows(anchorer, "SELECT count(*), count(DISTINCT cid) FROM anchor_members")[0]
    assert members == (3000, 3000)
    for sample in samples[::500]:
        assert anchorer.verify_on_chain(anchorer.proof(sample))


@pytest.mark.parametrize("bad", ["not-a-cid", ""])
def test_bad_sample_ids_are_refused(chain, tmp_path: Path, bad: str) -> None:  # type: ignore[no-untyped-def]
    deployment = deploy_contracts(chain)
    anchorer = _anchorer(tmp_path, chain, deployment.registry)
    with pytest.raises(LedgerError, match="not a CID"):
        anchorer.enqueue([_samples(1)[0], bad])
    assert anchorer.pending_count() == 0


def test_a_journal_file_of_an_older_version_is_imported_once(chain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Before the journal moved into the platform database it was ``anchoring.sqlite``: its
    batches, proofs and pending samples are copied over at start-up, never twice."""
    import sqlite3

    deployment = deploy_contracts(chain)
    source = _anchorer(tmp_path / "old", chain, deployment.registry)
    source.enqueue(_samples(12))
    source.run()
    source.enqueue(_samples(15)[12:])  # three still pending
    before = source.proof(_samples(12)[5])
    source.close()
    old = sqlite3.connect(tmp_path / "anchoring.sqlite")  # the old layout: pending, batches, members
    old.executescript(
        "CREATE TABLE pending (cid TEXT PRIMARY KEY, added REAL NOT NULL);"
        "CREATE TABLE batches (id INTEGER PRIMARY KEY, root TEXT UNIQUE NOT NULL, manifest TEXT NOT NULL,"
        " size INTEGER NOT NULL, state TEXT NOT NULL, tx_hash TEXT, block INTEGER, chain_id INTEGER, registry TEXT,"
        " created REAL NOT NULL, anchored REAL, history TEXT NOT NULL DEFAULT '[]');"
        "CREATE TABLE members (cid TEXT PRIMARY KEY, batch INTEGER NOT NULL, position INTEGER NOT NULL,"
        " proof TEXT NOT NULL);"
    )
    copy = _anchorer(tmp_path / "old", chain, deployment.registry)
    for table, prefix in (("batches", "anchor_"), ("members", "anchor_"), ("pending", "anchor_")):
        columns = [c[1] for c in old.execute(f"PRAGMA table_info({table})")]
        rows = journal_rows(copy, f"SELECT {', '.join(columns)} FROM {prefix}{table}")
        old.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
    old.commit()
    old.close()
    copy.close()
    fresh = _anchorer(tmp_path / "new", chain, deployment.registry)
    assert fresh.import_sqlite_journal(tmp_path / "anchoring.sqlite") == 1
    assert not (tmp_path / "anchoring.sqlite").exists() and (tmp_path / "anchoring.sqlite.imported").exists()
    assert fresh.proof(_samples(12)[5]) == before and fresh.verify_on_chain(before)
    assert fresh.stats() == {"pending": 3, "anchored_samples": 12, "batches_confirmed": 1}
    assert fresh.import_sqlite_journal(tmp_path / "anchoring.sqlite") == 0  # renamed: never twice
