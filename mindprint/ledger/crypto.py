"""Payload encryption, key wrapping and crypto-shredding.

- Each session gets a random 256-bit **data key**. EEG payloads are sealed with
  ChaCha20-Poly1305 (an AEAD from ``cryptography``) before they leave the device; the
  associated data binds each ciphertext to its session and purpose, so a ciphertext
  cannot be moved to another session unnoticed. Envelope: ``b"MPE1" || nonce(12) || ct``.
- The data key is **wrapped** for each authorised recipient (the platform, researchers)
  with HPKE (RFC 9180, base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
  ChaCha20-Poly1305; ``info`` binds the session). Keys wrapped by earlier versions (an
  ephemeral X25519 agreement, HKDF-SHA256, ChaCha20-Poly1305) still unwrap.
- IPFS and the chain only ever see envelopes and CIDs. Wrapped keys are *not* pinned:
  they live in a :class:`KeyStore`. Erasing a session's entries there makes every pinned
  envelope of the session unreadable (crypto-shredding).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mindprint.core.errors import CryptoError

logger = logging.getLogger(__name__)

MAGIC = b"MPE1"
NONCE_BYTES = 12
WRAP_INFO = b"mindprint key wrap v1"
HPKE_INFO = b"mindprint data key v2/"
HPKE_SCHEME = "hpke-x25519-sha256-chacha20poly1305"
LEGACY_SCHEME = "x25519-hkdf-chacha20poly1305"
_HPKE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_ENC_BYTES = 32

__all__ = [
    "KeyStore",
    "RecipientKey",
    "WrappedKey",
    "new_data_key",
    "open_payload",
    "seal_payload",
    "seal_payload_deterministic",
    "unwrap_key",
    "wrap_key",
]


def new_data_key() -> bytes:
    """A fresh random 32-byte data key."""
    return ChaCha20Poly1305.generate_key()


def seal_payload(data_key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """Encrypt ``plaintext``; ``associated`` (e.g. session id + purpose) is authenticated."""
    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + ChaCha20Poly1305(data_key).encrypt(nonce, plaintext, associated)


def seal_payload_deterministic(data_key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """:func:`seal_payload` with a synthetic nonce (HMAC of key, associated data and plaintext).

    The same plaintext sealed twice gives the same envelope (so manifests built on demand
    are content-addressed stably); a nonce repeats only for an identical message.
    """
    nonce = hmac.new(data_key, b"mindprint siv\x00" + associated + b"\x00" + plaintext, hashlib.sha256).digest()
    nonce = nonce[:NONCE_BYTES]
    return MAGIC + nonce + ChaCha20Poly1305(data_key).encrypt(nonce, plaintext, associated)


def open_payload(data_key: bytes, envelope: bytes, associated: bytes) -> bytes:
    """Decrypt an envelope from :func:`seal_payload` (``CryptoError`` if anything is off)."""
    if not envelope.startswith(MAGIC) or len(envelope) < len(MAGIC) + NONCE_BYTES + 16:
        raise CryptoError("not a mindprint envelope")
    nonce = envelope[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        return ChaCha20Poly1305(data_key).decrypt(nonce, envelope[len(MAGIC) + NONCE_BYTES :], associated)
    except InvalidTag as err:
        raise CryptoError("envelope failed authentication (wrong key, wrong session or tampered)") from err


@dataclass(frozen=True, slots=True, repr=False)
class RecipientKey:
    """An X25519 key pair of a recipient (the platform or a researcher)."""

    private_key: X25519PrivateKey

    @classmethod
    def generate(cls) -> RecipientKey:
        return cls(X25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def private_bytes(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> RecipientKey:
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def __repr__(self) -> str:
        return f"RecipientKey(public={self.public_key.hex()[:16]}…)"


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key wrapped for one recipient (HPKE: ``ephemeral`` is the encapsulated key)."""

    recipient: bytes
    ephemeral: bytes
    nonce: bytes
    ciphertext: bytes
    scheme: str = HPKE_SCHEME

    def to_dict(self) -> dict[str, str]:
        value = {k: getattr(self, k).hex() for k in ("recipient", "ephemeral", "nonce", "ciphertext")}
        value["scheme"] = self.scheme
        return value

    @classmethod
    def from_dict(cls, value: dict[str, str]) -> WrappedKey:
        """Parse a stored or uploaded wrapped key (``CryptoError`` if malformed)."""
        try:
            fields = {k: bytes.fromhex(value[k]) for k in ("recipient", "ephemeral", "nonce", "ciphertext")}
            scheme = str(value.get("scheme", LEGACY_SCHEME))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CryptoError(f"malformed wrapped key: {err!r}") from err
        if scheme not in (HPKE_SCHEME, LEGACY_SCHEME) or len(fields["recipient"]) != 32:
            raise CryptoError(f"unsupported wrapped key (scheme {scheme!r})")
        return cls(**fields, scheme=scheme)


def _kek(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=WRAP_INFO).derive(shared)


def wrap_key(data_key: bytes, recipient_public: bytes, session: str) -> WrappedKey:
    """Wrap ``data_key`` for the holder of ``recipient_public`` with HPKE (bound to ``session``)."""
    try:
        sealed = _HPKE.encrypt(
            data_key, X25519PublicKey.from_public_bytes(recipient_public), HPKE_INFO + session.encode()
        )
    except ValueError as err:
        raise CryptoError(f"cannot wrap for recipient key: {err}") from err
    return WrappedKey(recipient_public, sealed[:_ENC_BYTES], b"", sealed[_ENC_BYTES:])


def unwrap_key(wrapped: WrappedKey, recipient: RecipientKey, session: str) -> bytes:
    """Recover the data key with the recipient's private key."""
    if wrapped.recipient != recipient.public_key:
        raise CryptoError("this key was wrapped for another recipient")
    if wrapped.scheme == HPKE_SCHEME:
        try:
            data_key = _HPKE.decrypt(
                wrapped.ephemeral + wrapped.ciphertext, recipient.private_key, HPKE_INFO + session.encode()
            )
        except (InvalidTag, ValueError) as err:
            raise CryptoError("wrapped key failed authentication") from err
        if len(data_key) != 32:
            raise CryptoError("wrapped key does not hold a 32-byte data key")
        return data_key
    shared = recipient.private_key.exchange(X25519PublicKey.from_public_bytes(wrapped.ephemeral))
    try:
        return ChaCha20Poly1305(_kek(shared, wrapped.ephemeral, wrapped.recipient)).decrypt(
            wrapped.nonce, wrapped.ciphertext, session.encode()
        )
    except InvalidTag as err:
        raise CryptoError("wrapped key failed authentication") from err


class KeyStore:
    """Wrapped data keys per session, one JSON file each (mode 0600); erasable.

    Deleting a session's file is crypto-shredding: the envelopes pinned on IPFS stay,
    but nobody can decrypt them any more.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, session: str) -> Path:
        if not session or "/" in session or session.startswith("."):
            raise CryptoError(f"invalid session id {session!r}")
        return self.root / f"{session}.json"

    def add(self, session: str, wrapped: WrappedKey) -> None:
        path = self._path(session)
        entries = self.wrapped(session) if path.exists() else []
        if any(w.recipient == wrapped.recipient for w in entries):
            entries = [w for w in entries if w.recipient != wrapped.recipient]
        entries.append(wrapped)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump([w.to_dict() for w in entries], handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def wrapped(self, session: str) -> list[WrappedKey]:
        path = self._path(session)
        if not path.exists():
            raise CryptoError(f"no keys for session {session} (never stored, or erased)")
        return [WrappedKey.from_dict(v) for v in json.loads(path.read_text())]

    def data_key(self, session: str, recipient: RecipientKey) -> bytes:
        for wrapped in self.wrapped(session):
            if wrapped.recipient == recipient.public_key:
                return unwrap_key(wrapped, recipient, session)
        raise CryptoError(f"session {session} has no key for recipient {recipient.public_key.hex()[:16]}…")

    def erase(self, session: str) -> bool:
        """Crypto-shred a session: returns True if there was anything to erase."""
        path = self._path(session)
        existed = path.exists()
        path.unlink(missing_ok=True)
        if existed:
            logger.info("erased the keys of session %s", session)
        return existed
