"""Pinning and anchoring workers over the database job queue.

Jobs are claimed atomically — ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, a
single ``BEGIN IMMEDIATE`` transaction on SQLite — so two workers never take the same
job; a job left ``running`` by a crashed worker is reclaimed after ``reclaim_seconds``.
Handlers are idempotent (pinning twice is a no-op; the anchoring journal refuses to
queue a sample twice and the contract refuses a root twice), so at-least-once delivery
never anchors a sample twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from mindprint.labeling.store import Job, Submission, sessions, utcnow
from mindprint.ledger.anchoring import Anchorer
from mindprint.ledger.ipfs import KuboClient, push_dag
from mindprint.platform.runners import dead_on_this_host, runner_id
from mindprint.platform.service import Platform

logger = logging.getLogger(__name__)

RECOVER_EVERY = 5.0  # seconds between looks for jobs held by dead processes of this host

__all__ = ["Worker", "WorkerStats", "requeue_accepted"]


def enqueue_once(db: Session, kind: str, ref: str) -> None:
    """Add a ``kind`` job for ``ref`` unless there is one (the caller commits)."""
    if db.scalar(select(Job.id).where(Job.kind == kind, Job.ref == ref)) is None:
        db.add(Job(kind=kind, ref=ref))


def requeue_accepted(engine: Engine) -> int:
    """Queue ``pin`` and ``anchor`` jobs for accepted samples that have none; returns how many.

    Acceptance commits the row and its jobs together, so this finds nothing unless rows
    were written by an older version (which committed them separately); run at start-up.
    """
    queued = 0
    with sessions(engine)() as db:
        for kind in ("pin", "anchor"):
            missing = db.scalars(
                select(Submission.cid)
                .outerjoin(Job, and_(Job.ref == Submission.cid, Job.kind == kind))
                .where(Submission.status == "accepted", Job.id.is_(None))
            ).all()
            db.add_all(Job(kind=kind, ref=cid) for cid in missing)
            queued += len(missing)
        db.commit()
    return queued


@dataclass
class WorkerStats:
    pinned: int = 0
    anchored: int = 0
    failed: int = 0


class Worker:
    def __init__(
        self,
        engine: Engine,
        platform: Platform,
        anchorer: Anchorer | None,
        *,
        kubo: KuboClient | None = None,
        max_backoff: float = 300.0,
        batch_size: int = 1024,
        reclaim_seconds: float = 300.0,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions(engine)
        self.platform = platform
        self.anchorer = anchorer
        self.kubo = kubo
        self.max_backoff = max_backoff
        self.batch_size = batch_size
        self.reclaim = dt.timedelta(seconds=reclaim_seconds)
        self.name = name or runner_id()
        self._recovered_at = 0.0

    def recover(self) -> int:
        """Release jobs left ``running`` by a dead process of this host (a killed worker or
        API process) so they run now rather than after ``reclaim_seconds``; returns how many."""
        with self.sessions() as db:
            held = db.execute(select(Job.id, Job.worker).where(Job.state == "running")).all()
            ids = [job_id for job_id, worker in held if dead_on_this_host(worker)]
            if ids:
                db.execute(update(Job).where(Job.id.in_(ids), Job.state == "running").values(state="queued"))
            db.commit()
        return len(ids)

    def claim(self, kind: str, limit: int) -> list[tuple[int, str]]:
        """Atomically take up to ``limit`` jobs of ``kind``; returns (id, ref)."""
        now = utcnow()
        due = and_(
            Job.kind == kind,
            or_(
                and_(Job.state == "queued", or_(Job.not_before.is_(None), Job.not_before <= now)),
                and_(Job.state == "running", Job.claimed_at < now - self.reclaim),
            ),
        )
        with self.sessions() as db:
            if self.engine.dialect.name == "sqlite":
                db.execute(text("BEGIN IMMEDIATE"))
                rows = db.execute(select(Job.id, Job.ref).where(due).order_by(Job.id).limit(limit)).all()
            else:
                rows = db.execute(
                    select(Job.id, Job.ref).where(due).order_by(Job.id).limit(limit).with_for_update(skip_locked=True)
                ).all()
            ids = [row[0] for row in rows]
            if ids:
                db.execute(
                    update(Job)
                    .where(Job.id.in_(ids))
                    .values(state="running", claimed_at=now, worker=self.name, attempts=Job.attempts + 1)
                )
            db.commit()
        return [(row[0], row[1]) for row in rows]

    def _finish(self, ids: list[int], error: str | None = None, *, retry_in: float = 0.0) -> None:
        values: dict[str, object] = {"state": "queued" if error else "done", "last_error": error}
        if error and retry_in > 0:
            values["not_before"] = utcnow() + dt.timedelta(seconds=retry_in)
        with self.sessions() as db:
            db.execute(update(Job).where(Job.id.in_(ids)).values(**values))
            db.commit()

    def _backoff(self, job_id: int) -> float:
        """Seconds before a failed job is tried again: 2, 4, 8 … up to ``max_backoff``."""
        with self.sessions() as db:
            attempts = db.scalar(select(Job.attempts).where(Job.id == job_id)) or 1
        return float(min(self.max_backoff, 2.0 ** min(attempts, 16)))

    def run_once(self) -> WorkerStats:
        stats = WorkerStats()
        if time.monotonic() - self._recovered_at > RECOVER_EVERY:  # a worker beside this one was killed
            self._recovered_at = time.monotonic()
            if self.recover():
                logger.warning("released the jobs of a stopped process on this host")
        pins = self.claim("pin", 100)
        for job_id, ref in pins:
            try:
                with self.sessions() as db:
                    submission = db.get(Submission, ref)
                    # a sample pins its sealed manifest; other refs (a federated model, a round
                    # record) are blocks of the blockstore pinned as they are
                    manifest = submission.sealed_manifest if submission else None
                    if submission is None and self.platform.blockstore.has(ref):
                        manifest = ref
                if manifest:
                    self.platform.blockstore.pin(manifest)
                    if self.kubo is not None:  # the IPFS node: the header and the cited chunks' envelopes
                        push_dag(self.kubo, self.platform.blockstore, manifest)
                self._finish([job_id])
                stats.pinned += 1
            except Exception as err:  # a failing job is retried (backing off), never lost
                delay = self._backoff(job_id)
                logger.warning("pin job %s failed (%s); retry in %.0f s", job_id, err, delay)
                self._finish([job_id], str(err), retry_in=delay)
                stats.failed += 1
        if self.anchorer is not None:
            anchors = self.claim("anchor", self.batch_size * 4)
            if anchors or self.anchorer.unfinished():
                try:
                    self.anchorer.enqueue(ref for _, ref in anchors)
                    self.anchorer.run(self.batch_size)
                    self._finish([job_id for job_id, _ in anchors])
                    stats.anchored += len(anchors)
                except Exception as err:
                    logger.warning("anchoring failed: %s", err)
                    self._finish([job_id for job_id, _ in anchors], str(err))
                    stats.failed += len(anchors)
        return stats
