"""Workers: atomic job claims, two workers at once, each sample anchored exactly once."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from mindprint.core.ipld import cid_for_block
from mindprint.labeling.store import Account, Job, Project, Submission, TaskItem, make_engine, migrate, sessions
from mindprint.labeling.verification.model import load_default_model
from mindprint.labeling.worker import Worker
from mindprint.ledger.anchoring import Anchorer
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.chain import ChainClient, deploy_contracts
from mindprint.ledger.crypto import KeyStore, RecipientKey
from mindprint.platform.service import Platform

from .test_anchoring import journal_rows


def _seed(engine, store: Blockstore, n: int, *, pin_jobs: bool) -> list[str]:  # type: ignore[no-untyped-def]
    """A contributor, a project, a task and ``n`` accepted submissions with their jobs."""
    with sessions(engine)() as db:
        db.add(Account(address="0xc"))
        db.commit()  # parents first: no ORM relationships order the inserts
        db.add(Project(id=1, owner="0xc", name="p", label_schema={"kind": "text"}, redundancy=1))
        db.commit()
        db.add(TaskItem(id=1, project_id=1, content={"text": "t"}))
        db.commit()
        cids = []
        for i in range(n):
            cid = str(cid_for_block(f"sample-{i}".encode(), "dag-cbor"))
            manifest = str(store.put_node({"sample": i}))
            db.add(
                Submission(
                    cid=cid,
                    task_id=1,
                    contributor="0xc",
                    device="00",
                    label={"value": "x"},
                    status="accepted",
                    scores={},
                    reasons={"reasons": []},
                    sealed_manifest=manifest,
                )
            )
            if pin_jobs:
                db.add(Job(kind="pin", ref=cid))
            db.add(Job(kind="anchor", ref=cid))
            cids.append(cid)
        db.commit()
    return cids


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_the_queue_without_double_work(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":  # claims use SELECT ... FOR UPDATE SKIP LOCKED there
        from .services import create_database

        url = create_database(request.getfixturevalue("postgres_url"), f"worker_{uuid.uuid4().hex}")
    else:
        url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(url)
    migrate(engine)
    store = Blockstore(tmp_path / "blocks")
    _seed(engine, store, 300, pin_jobs=True)
    platform = Platform(load_default_model(), store, KeyStore(tmp_path / "keys"), RecipientKey.generate())
    chain = ChainClient.embedded()
    deployment = deploy_contracts(chain)
    workers = [
        Worker(
            engine,
            platform,
            Anchorer(engine, store, chain, deployment.registry),
            batch_size=64,
            name=f"w{i}",
        )
        for i in range(2)
    ]
    claims: list[list[tuple[int, str]]] = [[], []]

    def run(i: int) -> None:
        for _ in range(20):
            taken = workers[i].claim("pin", 7)
            claims[i].extend(taken)
            workers[i]._finish([job for job, _ in taken])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [job for worker_claims in claims for job, _ in worker_claims]
    assert len(ids) == len(set(ids)) == 280  # disjoint claims, 2 × 20 rounds × 7
    for worker in workers:
        while worker.run_once().anchored:
            pass
    with sessions(engine)() as db:
        states = {j.state for j in db.query(Job).all()}
    assert states == {"done"}
    anchorer = workers[0].anchorer
    assert anchorer is not None
    members = journal_rows(anchorer, "SELECT count(*), count(DISTINCT cid) FROM anchor_members")[0]
    assert members == (300, 300)
    registry = chain.contract("ProvenanceRegistry", deployment.registry)
    events = registry.events.Anchored.get_logs(from_block=0)
    batches = journal_rows(anchorer, "SELECT count(*) FROM anchor_batches")[0][0]
    assert len(events) == batches
    assert len(store.pins()) == 20  # the 20 pin jobs left for run_once pinned their sealed manifests


def test_separate_worker_process_anchors_on_a_shared_chain(tmp_path: Path, anvil_url: str) -> None:
    """`mindprint serve --rpc-url` deploys; a separate `mindprint worker` process anchors."""
    import os
    import subprocess
    import sys

    from mindprint.api.server import start_platform
    from mindprint.api.settings import ApiSettings

    from .services import ANVIL_KEY

    home = tmp_path / "home"
    settings = ApiSettings(database_url=f"sqlite:///{tmp_path / 'p.db'}", data_dir=home / "platform")
    running = start_platform(
        settings, rpc_url=anvil_url, operator_key=ANVIL_KEY, worker_interval=3600, deploy=True
    )  # its own worker idles
    try:
        engine = make_engine(settings.database_url)
        _seed(engine, running.platform.blockstore, 5, pin_jobs=False)
        env = {
            **os.environ,
            "MINDPRINT_HOME": str(home),
            "MINDPRINT_DATABASE_URL": settings.database_url,
            "MINDPRINT_OPERATOR_KEY": ANVIL_KEY,
        }
        result = subprocess.run(
            [sys.executable, "-m", "mindprint.cli", "worker", "--rpc-url", anvil_url, "--once", "--interval", "0.1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "anchored 5" in result.stdout
        with sessions(engine)() as db:
            assert {j.state for j in db.query(Job).all()} == {"done"}
        registry = running.chain.contract("ProvenanceRegistry", running.deployment.registry)
        assert len(registry.events.Anchored.get_logs(from_block=0)) >= 1
    finally:
        running.close()


def test_jobs_of_a_killed_process_run_at_the_next_start(tmp_path: Path) -> None:
    """A worker killed between claiming anchor jobs and finishing them: the next worker on
    this host releases them at once (not after the reclaim timeout) and anchors them once."""
    import os
    import subprocess
    import sys

    from mindprint.platform.runners import runner_id

    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine)
    store = Blockstore(tmp_path / "blocks")
    cids = _seed(engine, store, 6, pin_jobs=False)
    chain = ChainClient.embedded()
    deployment = deploy_contracts(chain)
    platform = Platform(load_default_model(), store, KeyStore(tmp_path / "keys"), RecipientKey.generate())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = runner_id().rpartition(":")[0]
    killed = f"{host}:{dead.stdout.strip()}"
    first = Worker(engine, platform, Anchorer(engine, store, chain, deployment.registry), name=killed)
    assert len(first.claim("anchor", 4)) == 4  # claimed, then "killed" before finishing
    first.anchorer.enqueue(cids[:4])  # type: ignore[union-attr]  # and half-way into the journal
    with sessions(engine)() as db:  # a job held by a live process elsewhere on this host stays held
        db.query(Job).filter(Job.ref == cids[4]).update({"state": "running", "worker": f"{host}:{os.getppid()}"})
        db.commit()
    second = Worker(engine, platform, Anchorer(engine, store, chain, deployment.registry))
    assert second.recover() == 4
    assert second.run_once().anchored == 5  # the four released and the queued one
    with sessions(engine)() as db:
        states = {j.ref: j.state for j in db.query(Job)}
    assert [states[c] for c in cids] == ["done"] * 4 + ["running", "done"]
    assert second.anchorer is not None
    assert journal_rows(second.anchorer, "SELECT count(*), count(DISTINCT cid) FROM anchor_members")[0] == (5, 5)
