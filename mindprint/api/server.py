"""Running the platform: the API with its pinning/anchoring worker.

``mindprint serve`` uses :func:`start_platform` and runs uvicorn in the foreground; the
demo and the tests run it in a background thread with :class:`ServerThread`, always on
127.0.0.1. ``mindprint serve --workers N`` runs N API processes (a listening socket
each, :mod:`mindprint.api.processes`; each built by :func:`app_from_environment`) and the
pinning/anchoring worker in the supervising process; they share the platform database,
the data directory and a chain given by ``--rpc-url``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from mindprint.api.app import create_app
from mindprint.api.settings import ApiSettings, get_settings
from mindprint.labeling.submissions import warm_up
from mindprint.labeling.worker import Worker, requeue_accepted
from mindprint.ledger.chain import ChainClient, Deployment
from mindprint.platform.service import Platform, connect_chain, platform_for

logger = logging.getLogger(__name__)

__all__ = ["RunningPlatform", "ServerThread", "app_from_environment", "free_port", "start_platform"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningPlatform:
    app: FastAPI
    platform: Platform
    chain: ChainClient
    deployment: Deployment
    worker: Worker
    stop: threading.Event

    def close(self) -> None:
        self.stop.set()


def make_worker(platform: Platform, settings: ApiSettings, **options: Any) -> Worker:
    """The pinning/anchoring worker; pins to IPFS (``MINDPRINT_IPFS_URL``, a Kubo RPC API) when
    set (failed pushes stay queued in the job table), else only into the local blockstore."""
    from mindprint.ledger.ipfs import KuboClient

    assert platform.engine is not None
    kubo = KuboClient(settings.ipfs_url) if settings.ipfs_url else None
    return Worker(platform.engine, platform, platform.anchorer, kubo=kubo, **options)


def start_platform(
    settings: ApiSettings,
    *,
    rpc_url: str | None = None,
    operator_key: str | None = None,
    worker_interval: float = 1.0,
    worker: bool = True,
    deploy: bool = False,
) -> RunningPlatform:
    """Build the app, the chain (embedded unless ``rpc_url``), the contracts and, with
    ``worker``, a pinning/anchoring worker thread. ``deploy``:
    deploy the contracts on ``rpc_url`` when no deployment file names them."""
    if rpc_url and rpc_url != settings.rpc_url:
        settings = settings.model_copy(update={"rpc_url": rpc_url})
    # an API process verifies requests on its own threads (and there is one process per
    # core): BLAS threads on top of them only contend — a 640×96×128 product of the replay
    # keys took 1.3 ms on one thread and 4.2 ms on two while the other core served requests
    threadpool_limits(limits=1, user_api="blas")
    app = create_app(max_body=settings.max_body_bytes, sign_ins_per_minute=settings.sign_ins_per_minute)
    app.state.settings = settings
    platform = connect_chain(platform_for(settings), settings, operator_key=operator_key, deploy=deploy)
    # in the processes that serve the app, before they accept a connection (not in the
    # supervisor of `serve --workers`): the first submission would wait for compiled kernels
    app.router.add_event_handler("startup", lambda: warm_up(platform))
    assert platform.chain is not None and platform.deployment is not None and platform.engine is not None
    chain, deployment = platform.chain, platform.deployment
    from mindprint.web.exports import fail_interrupted

    if fail_interrupted(platform.engine):
        logger.warning("export jobs of a stopped API process marked failed")
    stop = threading.Event()
    runner = make_worker(platform, settings, batch_size=1024)
    if worker:
        requeued = requeue_accepted(platform.engine)
        if requeued:
            logger.warning("queued pin/anchor jobs for %d accepted samples that had none", requeued)

        def loop() -> None:
            while not stop.is_set():
                try:
                    runner.run_once()
                except Exception as err:  # the worker must survive a bad job; it is logged
                    logger.exception("worker iteration failed: %s", err)
                stop.wait(worker_interval)

        threading.Thread(target=loop, name="mindprint-worker", daemon=True).start()
    return RunningPlatform(app, platform, chain, deployment, runner, stop)


def app_from_environment() -> FastAPI:
    """uvicorn's factory for ``serve --workers N``: one API process, its settings from the
    environment (``MINDPRINT_*``, the operator key in ``MINDPRINT_OPERATOR_KEY``), the
    contracts already deployed by the supervising ``serve``, no worker thread (the
    supervisor runs it)."""
    settings = get_settings()
    running = start_platform(
        settings, rpc_url=settings.rpc_url, operator_key=os.environ.get("MINDPRINT_OPERATOR_KEY"), worker=False
    )
    return running.app


class ServerThread:
    """uvicorn in a background thread on 127.0.0.1 (context manager)."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="mindprint-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
