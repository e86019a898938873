"""Secure aggregation: the platform learns the sum of the clients' updates and nothing else.

The protocol of Bonawitz et al., *Practical Secure Aggregation for Privacy-Preserving
Machine Learning* (CCS 2017), for an honest-but-curious server, tolerant of clients that
drop out at any step:

0. **keys** — client *u* sends two X25519 public keys: ``c_pk`` (to encrypt shares to it)
   and ``s_pk`` (to agree pairwise masks). The server fixes the participants ``U1``.
1. **shares** — *u* draws a self-mask seed ``b_u``, splits ``b_u`` and its mask secret key
   ``s_sk`` into *t*-of-|U1| Shamir shares and sends each other participant *v* its pair,
   encrypted under X25519(c_sk_u, c_pk_v) (HKDF → ChaCha20-Poly1305). ``U2`` sent shares.
2. **masked** — *u* sends ``y_u = x_u + PRG(b_u) + Σ_{v∈U2, v≠u} ±PRG(s_uv)`` in Z/2³²
   (``+`` when u < v): pairwise masks cancel in the sum. ``U3`` sent.
3. **unmask** — every client of ``U3`` sends, for each other *v* of ``U2``, its share of
   ``b_v`` if *v* is in ``U3`` and of ``s_sk_v`` if *v* dropped — never both for one
   client. With *t* answers the server rebuilds the self masks of ``U3`` and the pairwise
   masks of the dropped clients and recovers ``Σ_{u∈U3} x_u`` exactly.

Updates are float vectors, fixed-point encoded (``SCALE``) after clipping to ``±BOUND``; the
sum of up to 2¹¹ clients fits in 32 bits. Every message is bytes (DAG-CBOR); the server
relays encrypted shares without being able to read them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

from mindprint.core.errors import InvalidRequest

__all__ = ["BOUND", "SCALE", "SecAggClient", "decode_vector", "encode_vector", "unmask_sum"]

#: Shamir's field: the Mersenne prime 2^521 − 1 (holds a 32-byte secret)
PRIME = 2**521 - 1
#: fixed-point scale and clipping bound of an update coordinate
SCALE = 2.0**16
BOUND = 2.0**11


def encode_vector(values: NDArray[np.floating]) -> NDArray[np.uint32]:
    """Fixed-point in Z/2³² (two's complement), clipped to ±BOUND."""
    clipped = np.clip(np.asarray(values, dtype=np.float64), -BOUND, BOUND)
    return np.round(clipped * SCALE).astype(np.int64).astype(np.uint32)


def decode_vector(values: NDArray[np.uint32]) -> NDArray[np.float64]:
    return np.asarray(values, dtype=np.uint32).astype(np.int32).astype(np.float64) / SCALE


def prg(seed: bytes, length: int) -> NDArray[np.uint32]:
    """``length`` pseudo-random 32-bit words from a 32-byte seed (ChaCha20 keystream)."""
    encryptor = Cipher(algorithms.ChaCha20(seed, b"\x00" * 16), mode=None).encryptor()
    return np.frombuffer(encryptor.update(b"\x00" * (4 * length)), dtype="<u4").copy()


def _kdf(shared: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(shared)


def split_secret(secret: bytes, n: int, t: int) -> list[tuple[int, int]]:
    """Shamir: ``n`` shares (x = 1 … n) of which any ``t`` rebuild ``secret``."""
    if not 1 <= t <= n:
        raise InvalidRequest(f"threshold {t} must lie in 1 … {n}")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(t - 1)]
    shares = []
    for x in range(1, n + 1):
        y = 0
        for c in reversed(coefficients):
            y = (y * x + c) % PRIME
        shares.append((x, y))
    return shares


def combine_shares(shares: Sequence[tuple[int, int]], size: int = 32) -> bytes:
    """Lagrange interpolation at 0 (the shares must be distinct and at least the threshold)."""
    secret = 0
    for i, (xi, yi) in enumerate(shares):
        num, den = 1, 1
        for j, (xj, _) in enumerate(shares):
            if i != j:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        secret = (secret + yi * num * pow(den, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * size):
        raise InvalidRequest("shares do not combine to a secret (too few or corrupted)")
    return secret.to_bytes(size, "big")


def _share_bytes(share: tuple[int, int]) -> bytes:
    return share[0].to_bytes(4, "big") + share[1].to_bytes(66, "big")


def _share_from(raw: bytes) -> tuple[int, int]:
    if len(raw) != 70:
        raise InvalidRequest("a Shamir share is 70 bytes")
    return int.from_bytes(raw[:4], "big"), int.from_bytes(raw[4:], "big")


def pair_seed(private: X25519PrivateKey, public: bytes, round_id: str) -> bytes:
    """The pairwise mask seed of two clients (the same from either side)."""
    return _kdf(
        private.exchange(X25519PublicKey.from_public_bytes(public)), b"mindprint-secagg-mask:" + round_id.encode()
    )


def _channel_key(private: X25519PrivateKey, public: bytes, round_id: str) -> bytes:
    return _kdf(
        private.exchange(X25519PublicKey.from_public_bytes(public)), b"mindprint-secagg-share:" + round_id.encode()
    )


@dataclass
class SecAggClient:
    """One client's side of a round (keeps its secrets in memory only)."""

    me: str  # the client's id (its account address)
    round_id: str
    c_sk: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    s_sk: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    b: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    keys: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # U1: id → (c_pk, s_pk)
    received: dict[str, bytes] = field(default_factory=dict)  # sender → encrypted share pair

    def advertise(self) -> dict[str, bytes]:
        """Step 0: the two public keys."""
        return {"c_pk": self.c_sk.public_key().public_bytes_raw(), "s_pk": self.s_sk.public_key().public_bytes_raw()}

    def share(self, keys: Mapping[str, Mapping[str, bytes]], threshold: int) -> dict[str, bytes]:
        """Step 1: given U1's keys, the encrypted share pair for each other participant."""
        if self.me not in keys:
            raise InvalidRequest("this client is not among the round's participants")
        self.keys = {v: (bytes(k["c_pk"]), bytes(k["s_pk"])) for v, k in keys.items()}
        ids = sorted(self.keys)
        s_raw = self.s_sk.private_bytes_raw()
        s_shares = split_secret(s_raw, len(ids), threshold)
        b_shares = split_secret(self.b, len(ids), threshold)
        out = {}
        for index, v in enumerate(ids):
            if v == self.me:
                self.received[v] = _share_bytes(s_shares[index]) + _share_bytes(b_shares[index])  # kept, not sent
                continue
            key = _channel_key(self.c_sk, self.keys[v][0], self.round_id)
            plain = (
                self.me.encode()
                + b"|"
                + v.encode()
                + b"|"
                + _share_bytes(s_shares[index])
                + _share_bytes(b_shares[index])
            )
            nonce = secrets.token_bytes(12)
            out[v] = nonce + ChaCha20Poly1305(key).encrypt(nonce, plain, self.round_id.encode())
        return out

    def masked_input(self, update: NDArray[np.floating], inbox: Mapping[str, bytes]) -> NDArray[np.uint32]:
        """Step 2: given the shares sent to this client by U2, the masked update."""
        senders = set(inbox) | {self.me}
        for v, ciphertext in inbox.items():
            self.received[v] = self._open(v, ciphertext)
        y = encode_vector(update) + prg(self.b, len(update))
        for v in sorted(senders - {self.me}):
            mask = prg(pair_seed(self.s_sk, self.keys[v][1], self.round_id), len(update))
            y = y + mask if self.me < v else y - mask
        return y.astype(np.uint32)

    def unmask(self, u2: Sequence[str], u3: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """Step 3: for each other client of U2, its b-share if it is in U3, else its s_sk-share."""
        survivors = set(u3)
        if self.me not in survivors:
            raise InvalidRequest("this client sent no masked input: it has nothing to unmask")
        out = {}
        for v in u2:
            pair = self.received.get(v)
            if pair is None:
                continue
            out[v] = ("b", pair[70:]) if v in survivors else ("s", pair[:70])
        return out

    def _open(self, sender: str, ciphertext: bytes) -> bytes:
        if sender not in self.keys or len(ciphertext) < 12 + 16:
            raise InvalidRequest(f"a share from {sender}, who is not a participant, or malformed")
        key = _channel_key(self.c_sk, self.keys[sender][0], self.round_id)
        try:
            plain = ChaCha20Poly1305(key).decrypt(ciphertext[:12], ciphertext[12:], self.round_id.encode())
        except Exception as err:
            raise InvalidRequest(f"the share from {sender} does not decrypt") from err
        head = sender.encode() + b"|" + self.me.encode() + b"|"
        if not plain.startswith(head) or len(plain) != len(head) + 140:
            raise InvalidRequest(f"the share from {sender} is not addressed to this client")
        return plain[len(head) :]


def unmask_sum(
    round_id: str,
    keys: Mapping[str, tuple[bytes, bytes]],
    u2: Sequence[str],
    masked: Mapping[str, NDArray[np.uint32]],
    reveals: Mapping[str, Mapping[str, tuple[str, bytes]]],
    threshold: int,
    length: int,
) -> NDArray[np.float64]:
    """The server's last step: Σ x_u over the clients that sent masked inputs (U3).

    ``reveals[w][v]`` is what client *w* revealed about *v*: ``("b", share)`` or ``("s", share)``.
    """
    u3 = sorted(masked)
    dropped = sorted(set(u2) - set(u3))
    if len(reveals) < threshold:
        raise InvalidRequest(f"{len(reveals)} clients answered the unmasking step, the threshold is {threshold}")
    total = np.zeros(length, dtype=np.uint32)
    for u in u3:
        total = total + np.asarray(masked[u], dtype=np.uint32)
    for u in u3:
        shares = [_share_from(r[u][1]) for r in reveals.values() if u in r and r[u][0] == "b"]
        if any(u in r and r[u][0] == "s" for r in reveals.values()):
            raise InvalidRequest(f"a client revealed the mask key of {u}, who sent its input")
        b = combine_shares(shares[:threshold]) if len(shares) >= threshold else None
        if b is None:
            raise InvalidRequest(f"too few shares to remove the self mask of {u}")
        total = total - prg(b, length)
    for v in dropped:
        shares = [_share_from(r[v][1]) for r in reveals.values() if v in r and r[v][0] == "s"]
        if len(shares) < threshold:
            raise InvalidRequest(f"too few shares to remove the masks of {v}, who dropped out")
        s_sk = X25519PrivateKey.from_private_bytes(combine_shares(shares[:threshold]))
        if s_sk.public_key().public_bytes_raw() != keys[v][1]:
            raise InvalidRequest(f"the shares of {v}'s mask key do not match its public key")
        for u in u3:
            mask = prg(pair_seed(s_sk, keys[u][1], round_id), length)
            # u added +mask if u < v, else −mask: undo it
            total = total - mask if u < v else total + mask
    return decode_vector(total.astype(np.uint32))
