"""The platform's secrets, from configuration: what every API process and worker of one
platform must share.

- ``token_secret`` — the HMAC key of bearer tokens (a token issued by one replica is
  accepted by every other, and a restart signs nobody out);
- ``platform_key`` — the X25519 key that opens the data keys companions wrap for the
  platform (HPKE);
- ``pseudonym_secret`` — the HMAC key of participants' pseudonyms (exports, pages).

Where they come from, first found wins: the environment (``MINDPRINT_TOKEN_SECRET``,
``MINDPRINT_PLATFORM_KEY``, ``MINDPRINT_PSEUDONYM_SECRET``), then the secrets file
(``MINDPRINT_SECRETS_FILE``, written once by ``mindprint platform init``), then — the
zero-configuration default of a single process — files created once in the data
directory. Several processes on one data directory share those files too; processes on
several machines need the secrets file (or the environment) on each.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindprint.core.errors import ConfigurationError
from mindprint.core.secret_files import load_or_create_secret, read_secret, write_secret
from mindprint.ledger.crypto import RecipientKey

__all__ = ["PlatformSecrets", "resolve_secrets"]

FORMAT = "mindprint-platform-secrets/1"


@dataclass(frozen=True, slots=True)
class PlatformSecrets:
    token_secret: bytes
    platform_key: bytes  # X25519 private key, 32 bytes
    pseudonym_secret: bytes

    @classmethod
    def generate(cls) -> PlatformSecrets:
        return cls(secrets.token_bytes(32), RecipientKey.generate().private_bytes(), secrets.token_bytes(32))

    def save(self, path: Path) -> None:
        """Write the secrets file (mode 0600); never overwrites one."""
        body = {
            "format": FORMAT,
            "token_secret": self.token_secret.hex(),
            "platform_key": self.platform_key.hex(),
            "pseudonym_secret": self.pseudonym_secret.hex(),
        }
        try:
            write_secret(Path(path), (json.dumps(body, indent=1) + "\n").encode())
        except FileExistsError as err:
            raise ConfigurationError(f"{path} exists: platform secrets are never overwritten") from err

    @classmethod
    def load(cls, path: Path) -> PlatformSecrets:
        try:
            body = json.loads(read_secret(Path(path), "platform secrets file"))
            if body.get("format") != FORMAT:
                raise ValueError(f"format is {body.get('format')!r}, not {FORMAT}")
            loaded = cls(
                bytes.fromhex(body["token_secret"]),
                bytes.fromhex(body["platform_key"]),
                bytes.fromhex(body["pseudonym_secret"]),
            )
        except FileNotFoundError as err:
            raise ConfigurationError(f"no platform secrets file {path}: run `mindprint platform init`") from err
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ConfigurationError(f"{path} is not a mindprint platform secrets file: {err}") from err
        if len(loaded.platform_key) != 32 or len(loaded.token_secret) < 16 or len(loaded.pseudonym_secret) < 16:
            raise ConfigurationError(f"{path}: a key is too short")
        return loaded


def _hex(value: str | None, what: str) -> bytes | None:
    if not value:
        return None
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError as err:
        raise ConfigurationError(f"{what} must be hex") from err


def resolve_secrets(settings: Any) -> PlatformSecrets:
    """The secrets of ``settings`` (its environment fields > secrets file > data-directory files)."""
    from_file = PlatformSecrets.load(settings.secrets_file) if settings.secrets_file else None
    root = Path(settings.platform_dir)

    def pick(name: str, env_value: bytes | None, file_value: bytes | None, make: Any, filename: str) -> bytes:
        if env_value:
            return env_value
        if file_value:
            return file_value
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return load_or_create_secret(root / filename, make, name)

    token = settings.token_secret
    platform_key = _hex(settings.platform_key, "MINDPRINT_PLATFORM_KEY")
    if platform_key is not None and len(platform_key) != 32:
        raise ConfigurationError("MINDPRINT_PLATFORM_KEY must be 32 bytes (64 hex digits)")
    return PlatformSecrets(
        pick(
            "token secret",
            token,
            from_file.token_secret if from_file else None,
            lambda: secrets.token_bytes(32),
            "token.secret",
        ),
        pick(
            "platform key",
            platform_key,
            from_file.platform_key if from_file else None,
            lambda: RecipientKey.generate().private_bytes(),
            "platform_x25519.key",
        ),
        pick(
            "pseudonym key",
            _hex(settings.pseudonym_secret, "MINDPRINT_PSEUDONYM_SECRET"),
            from_file.pseudonym_secret if from_file else None,
            lambda: os.urandom(32),
            "pseudonym.key",
        ),
    )
