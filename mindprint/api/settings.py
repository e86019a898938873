"""API settings from the environment (read here and in the CLI only)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mindprint.core.settings import load_settings


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """``MINDPRINT_DATABASE_URL`` (default SQLite in ``MINDPRINT_HOME``),
    ``MINDPRINT_DOMAIN`` (the sign-in domain), ``MINDPRINT_TOKEN_SECRET`` (HMAC key for
    bearer tokens; random per process if unset), ``MINDPRINT_OPERATORS`` (comma-separated
    addresses that sign in as operators), ``MINDPRINT_TOKEN_SECONDS``, ``MINDPRINT_LEASE_SECONDS``.
    """

    database_url: str
    domain: str = "localhost"
    token_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    operators: tuple[str, ...] = ()
    token_seconds: int = 900
    lease_seconds: int = 600
    chain_id: int = 1
    data_dir: Path | None = None  # blockstore, keys; default: MINDPRINT_HOME/platform

    @property
    def platform_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        return load_settings().home / "platform"


@lru_cache(maxsize=1)
def get_settings() -> ApiSettings:
    env = os.environ
    home = load_settings().home
    secret = env.get("MINDPRINT_TOKEN_SECRET")
    return ApiSettings(
        database_url=env.get("MINDPRINT_DATABASE_URL", f"sqlite:///{home / 'platform.db'}"),
        domain=env.get("MINDPRINT_DOMAIN", "localhost"),
        token_secret=secret.encode() if secret else secrets.token_bytes(32),
        operators=tuple(a.strip().lower() for a in env.get("MINDPRINT_OPERATORS", "").split(",") if a.strip()),
        token_seconds=int(env.get("MINDPRINT_TOKEN_SECONDS", "900")),
        lease_seconds=int(env.get("MINDPRINT_LEASE_SECONDS", "600")),
    )
