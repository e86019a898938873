"""Device keys: one Ed25519 key per headset, stored 0600, never logged.

The public key (32 bytes, shown as hex) identifies the device everywhere: in session
headers, chunk signatures and the device registry. The private key stays in the user's
data directory (see ``mindprint device init``); on a headset with a secure element it
would never leave the chip (see hardware/ATTESTATION.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mindprint.core.errors import KeyStoreError
from mindprint.core.secret_files import read_secret, write_secret

logger = logging.getLogger(__name__)

__all__ = ["DeviceKey", "verify_signature"]


@dataclass(frozen=True, slots=True, repr=False)
class DeviceKey:
    """An Ed25519 device key. ``repr`` shows only the public key."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> DeviceKey:
        """Create a fresh random key (in memory; see :meth:`save`)."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        """Raw 32-byte public key."""
        return self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def device_id(self) -> str:
        """Hex public key: the device's identity."""
        return self.public_key.hex()

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self.private_key.sign(message)

    def __repr__(self) -> str:
        return f"DeviceKey(public={self.device_id[:16]}…)"

    def save(self, path: Path) -> None:
        """Write the key as PKCS#8 PEM, creating the file with mode 0600.

        Raises
        ------
        KeyStoreError
            If ``path`` already exists (keys are never overwritten) or cannot be written.
        """
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            write_secret(path, pem)
        except FileExistsError as err:
            raise KeyStoreError(f"a device key already exists at {path}; refusing to overwrite it") from err
        except OSError as err:
            raise KeyStoreError(f"cannot create device key file {path}: {err}") from err
        logger.info("created device key %s at %s", self.device_id[:16], path)

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        """Read a key written by :meth:`save`.

        Raises
        ------
        KeyStoreError
            If the file is missing, readable by group/others, or not an Ed25519 key.
        """
        try:
            pem = read_secret(path, "device key")
        except FileNotFoundError as err:
            raise KeyStoreError(f"no device key at {path}; run `mindprint device init` first") from err
        except OSError as err:
            raise KeyStoreError(f"cannot read device key {path}: {err}") from err
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as err:
            raise KeyStoreError(f"cannot read device key {path}: {err}") from err
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyStoreError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> DeviceKey:
        """Load the key at ``path``, creating it first if there is none."""
        if not path.exists():
            cls.generate().save(path)
        return cls.load(path)


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Return True if ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
