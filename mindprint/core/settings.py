"""Settings, read only by the CLI and the API and passed down as arguments.

Environment variables (all optional):

``MINDPRINT_HOME``
    Data directory (default: the platform's user data directory, e.g.
    ``~/.local/share/mindprint``). The device key lives here as ``device_key.pem``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved settings."""

    home: Path

    @property
    def device_key_path(self) -> Path:
        return self.home / "device_key.pem"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ
    home = env.get("MINDPRINT_HOME") or platformdirs.user_data_dir("mindprint", appauthor=False)
    return Settings(home=Path(home).expanduser())
