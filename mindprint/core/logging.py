"""Logging set-up for entry points only (the CLI and the API call this; libraries never do)."""

from __future__ import annotations

import logging

from rich.logging import RichHandler


def configure_logging(verbosity: int = 0) -> None:
    """Send mindprint's log records to stderr through Rich.

    ``verbosity`` 0 shows warnings, 1 info, 2 or more debug.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
    root = logging.getLogger("mindprint")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
