"""Files that hold secrets (keys): created once with mode 0600, never overwritten,
refused when other users can read them. Every key file of mindprint goes through here."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from mindprint.core.errors import KeyStoreError

__all__ = ["load_or_create_secret", "read_secret", "write_secret"]


def write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600, fsynced) holding ``data``.

    Raises
    ------
    FileExistsError
        If ``path`` exists: a secret is never overwritten.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def read_secret(path: Path, what: str = "key") -> bytes:
    """Read a secret file, refusing one that group or others can access.

    Raises
    ------
    KeyStoreError
        If ``path`` is accessible by other users.
    FileNotFoundError
        If there is no file.
    """
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(
            f"{what} {path} is accessible by other users (mode {stat.S_IMODE(mode):o}); run `chmod 600` on it"
        )
    return path.read_bytes()


def load_or_create_secret(path: Path, make: Callable[[], bytes], what: str = "key") -> bytes:
    """The secret at ``path``; created from ``make()`` first if there is none (race-safe)."""
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            write_secret(path, make())
    return read_secret(path, what)
