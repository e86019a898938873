"""``mindprint serve --workers N``: N API processes on one port, connections spread evenly.

Each API process binds **its own** listening socket to the port with ``SO_REUSEPORT``; the
kernel then hands every new connection to one of the sockets by a hash of its addresses.
uvicorn's own supervisor shares one socket between its processes instead, and whichever
process wakes first accepts every connection waiting (asyncio accepts up to the backlog in
one go): 32 clients connecting at once were split 3/29, 10/22 and 23/9 between two
processes, so one core verified while the other idled. With a socket each: about half each.

The supervisor (the ``serve`` process, which also runs the pinning/anchoring worker)
restarts an API process that dies, and on SIGINT or SIGTERM stops them all (uvicorn's
graceful shutdown: requests in flight finish). If the supervisor itself is killed, the
kernel stops its API processes (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from mindprint.core.errors import ConfigurationError

logger = logging.getLogger(__name__)

__all__ = ["serve_processes"]

FACTORY = "mindprint.api.server:app_from_environment"
BACKLOG = 2048
STOP_SECONDS = 8.0  # graceful shutdown, then SIGKILL (within a process manager's usual 10 s)
PR_SET_PDEATHSIG = 1
EARLY_SECONDS = 60.0  # an API process that dies sooner than this after its start failed to start
EARLY_LIMIT = 3  # early deaths in a row before the supervisor gives up


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that other processes may bind too (``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def _api_process(host: str, port: int, log_level: str, supervisor: int) -> None:
    """One API process: its own socket on the shared port, the app from the environment."""
    _stop_with(supervisor)
    sock = listening_socket(host, port)
    config = uvicorn.Config(FACTORY, factory=True, host=host, port=port, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])


def _stop_with(supervisor: int) -> None:
    """SIGTERM this process when the supervisor dies, even by SIGKILL (Linux ``PR_SET_PDEATHSIG``):
    no API process is left holding the port without the supervisor that would stop it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's SIGTERM stops the processes
        return
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def serve_processes(workers: int, host: str, port: int, *, log_level: str = "info") -> None:
    """Run ``workers`` API processes until SIGINT or SIGTERM; restart any that dies.

    The processes read their settings from the environment (they are spawned, not forked).
    Raises ConfigurationError if the port is taken by a socket that does not share it, or if
    API processes keep dying right after they start (settings they cannot load).
    """
    try:
        listening_socket(host, port).close()  # a taken port fails here, not in N processes
    except OSError as err:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {err}") from err
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=_api_process, args=(host, port, log_level, os.getpid()), name=f"mindprint-api-{index}", daemon=False
        )
        process.start()
        return process

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start(i) for i in range(workers)]
    started = [time.monotonic()] * workers
    early = 0
    try:
        while not stopping.wait(0.5):
            for index, process in enumerate(processes):
                if process.is_alive():
                    continue
                early = early + 1 if time.monotonic() - started[index] < EARLY_SECONDS else 0
                if early >= EARLY_LIMIT:
                    raise ConfigurationError(f"API processes exited {early} times in a row right after starting "
                                       f"(last exit code {process.exitcode}); see the log above")  # fmt: skip
                logger.warning("API process %d (PID %s) exited with %s: restarting it",
                               index, process.pid, process.exitcode)  # fmt: skip
                processes[index], started[index] = start(index), time.monotonic()
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_SECONDS
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
