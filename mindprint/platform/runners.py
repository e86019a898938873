"""Which process holds a piece of work: ``host:pid`` names and a check for dead holders.

Background work (pin/anchor jobs, export jobs) records the process that took it. A process
killed mid-job leaves its rows claimed; at the next start, rows held by a *dead process on
this host* are released at once instead of waiting for a timeout. Rows held by another host
are left to the timeout (its processes cannot be checked from here).
"""

from __future__ import annotations

import os
import socket

__all__ = ["dead_on_this_host", "runner_id"]


def _host() -> str:
    return socket.gethostname()[:50]


def runner_id() -> str:
    """This process's name, ``host:pid`` (fits the 64-character columns that store it)."""
    return f"{_host()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def dead_on_this_host(runner: str | None) -> bool:
    """True when ``runner`` names a process of this host that no longer runs."""
    host, _, pid = (runner or "").rpartition(":")
    return host == _host() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))
