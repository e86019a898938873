"""BIDS exports started from the requester console: a background thread per job, its
progress in the ``export_jobs`` table (any page can show it), the zip in the platform
directory until it is downloaded or the job is deleted."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine

from mindprint.labeling.store import ExportJob, sessions, utcnow
from mindprint.platform.runners import dead_on_this_host

logger = logging.getLogger(__name__)

__all__ = ["fail_interrupted", "run_export", "start_export"]


def fail_interrupted(engine: Engine) -> int:
    """Mark the unfinished jobs of dead processes on this host as failed (their thread is
    gone: a killed or restarted API process must not leave a job "running" for ever)."""
    failed = 0
    with sessions(engine)() as db:
        for job in db.query(ExportJob).filter(ExportJob.state.in_(("queued", "running"))):
            if dead_on_this_host(job.runner):
                job.state, job.error, job.finished = "failed", "interrupted: its API process stopped", utcnow()
                failed += 1
        db.commit()
    return failed


def _set(engine: Engine, job_id: int, **values: Any) -> None:
    with sessions(engine)() as db:
        db.execute(update(ExportJob).where(ExportJob.id == job_id).values(**values))
        db.commit()


def run_export(engine: Engine, platform: Any, settings: Any, job_id: int, project_id: int, fmt: str) -> None:
    """Export one project's verified samples to ``platform_dir/exports/job-N.zip``."""
    from mindprint.export.bids import export_dataset, zip_dataset
    from mindprint.platform.service import export_source

    _set(engine, job_id, state="running")
    work = Path(tempfile.mkdtemp(prefix="mindprint-export-"))
    try:
        source = export_source(platform, settings)

        def progress(done: int, total: int) -> None:
            _set(engine, job_id, done=done, total=total)

        summary = export_dataset(source, work / "dataset", projects=[project_id], fmt=fmt, progress=progress)
        folder = settings.platform_dir / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        archive = zip_dataset(work / "dataset", folder / f"job-{job_id}.zip")
        _set(
            engine,
            job_id,
            state="done",
            samples=summary.samples,
            done=summary.recordings,
            total=summary.recordings,
            path=str(archive),
            finished=utcnow(),
        )
    except Exception as err:  # the job records why; the page shows it
        logger.warning("export job %d failed: %s", job_id, err)
        _set(engine, job_id, state="failed", error=str(err)[:2000], finished=utcnow())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def start_export(engine: Engine, platform: Any, settings: Any, job: ExportJob) -> threading.Thread:
    thread = threading.Thread(
        target=run_export,
        args=(engine, platform, settings, job.id, job.project_id, job.format),
        name=f"mindprint-export-{job.id}",
        daemon=True,
    )
    thread.start()
    return thread
