"""The signed formats the companion, the platform and ``mindprint verify`` share.

- **Sample** (DAG-CBOR, ``mindprint/sample/v1``)::

      {type, task, label, contributor, device, session, chunks: [CID…], start, stop,
       stimulus_ns, response_ns, pipeline, features}

  ``chunks`` are the CIDs of consecutive signed chunks of ``session``; ``start``/``stop``
  count samples from the first of them. Optional: ``inference`` (on-device model output)
  and ``challenge`` ``{nonce, cues_ns}`` — the lease's challenge nonce and the device times
  at which its cues were drawn (challenge–response liveness). The device key signs the sample's binary CID
  (Ed25519); the wallet signs EIP-712 ``Sample(bytes32 sample,uint256 taskId,bytes32 label)``.
- **Device binding**: the DeviceRegistry's EIP-712 ``BindDevice`` typed data.
- **Chunk upload**: a chunk leaves the device as a ChaCha20-Poly1305 envelope under the
  session's data key, associated data ``session || "/" || CID`` (the same envelope the
  sealed-session manifests link, so the platform stores the device's ciphertext as is),
  with the device's signature over the plaintext CID. The data key travels once, wrapped
  with HPKE (RFC 9180) for the platform's X25519 public key.

:meth:`SampleValue.parse` validates every field's type and range, so that a malformed
block is a clear :class:`SampleError`, never a crash deeper down.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address
from multiformats import CID

from mindprint.core.errors import MindprintError
from mindprint.core.ipld import decode_block, raw_digest
from mindprint.ledger.crypto import seal_payload
from mindprint.ledger.sealing import envelope_aad

SAMPLE_TYPE = "mindprint/sample/v1"
MAX_TASK_ID = 2**31 - 1
MAX_EPOCH_CHUNKS = 64
MAX_LABEL_BYTES = 4096
REQUIRED = frozenset(
    {"task", "label", "contributor", "device", "session", "chunks", "start", "stop"}
    | {"stimulus_ns", "response_ns", "pipeline", "features"}
)

__all__ = [
    "MAX_TASK_ID",
    "SAMPLE_TYPE",
    "SampleError",
    "SampleValue",
    "SignedSample",
    "device_typed_data",
    "label_hash",
    "sample_typed_data",
    "seal_chunk",
]


class SampleError(MindprintError):
    """A sample bundle is malformed or does not check out."""


def label_hash(label: Any) -> bytes:
    return keccak(json.dumps(label, sort_keys=True, separators=(",", ":")).encode())


def sample_typed_data(sample_cid: CID, task: int, label: Any, chain_id: int) -> dict[str, Any]:
    return {
        "domain": {"name": "mindprint", "version": "1", "chainId": chain_id},
        "types": {
            "Sample": [
                {"name": "sample", "type": "bytes32"},
                {"name": "taskId", "type": "uint256"},
                {"name": "label", "type": "bytes32"},
            ]
        },
        "primaryType": "Sample",
        "message": {"sample": raw_digest(sample_cid), "taskId": task, "label": label_hash(label)},
    }


def device_typed_data(
    device: bytes, contributor: str, deadline: int, chain_id: int, registry: str, nonce: int = 0
) -> dict[str, Any]:
    """The DeviceRegistry's EIP-712 BindDevice message (same domain and types as the contract)."""
    return {
        "domain": {
            "name": "mindprint DeviceRegistry",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": registry,
        },
        "types": {
            "BindDevice": [
                {"name": "device", "type": "bytes32"},
                {"name": "contributor", "type": "address"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ]
        },
        "primaryType": "BindDevice",
        "message": {
            "device": device,
            "contributor": to_checksum_address(contributor),
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def seal_chunk(data_key: bytes, session: str, cid: CID, block: bytes) -> bytes:
    """The envelope a chunk travels (and is stored) in."""
    return seal_payload(data_key, block, envelope_aad(session, cid))


@dataclass(frozen=True, slots=True)
class SignedSample:
    block: bytes
    cid: CID
    device_signature: bytes
    wallet_signature: bytes

    @property
    def value(self) -> dict[str, Any]:
        return dict(decode_block(self.block))


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SampleError(f"sample field {name!r} must be an integer in [{low}, {high}], got {value!r:.60}")
    return value


@dataclass(frozen=True, slots=True)
class SampleValue:
    """A sample block's fields, every type and range checked (see :meth:`parse`)."""

    task: int
    label: Any
    contributor: str
    device: bytes
    session: str
    chunks: tuple[CID, ...]
    start: int
    stop: int
    stimulus_ns: int
    response_ns: int
    pipeline: str
    features: dict[str, Any]
    #: on-device inference: {"model": model CID text, "output": [logits]} (optional)
    inference: dict[str, Any] | None = None
    #: the lease's challenge answered: {"nonce": hex text, "cues_ns": [device times]} (optional)
    challenge: dict[str, Any] | None = None

    @classmethod
    def parse(cls, value: Any) -> SampleValue:
        """Validate a decoded sample block; raises :class:`SampleError` naming the bad field."""
        if not isinstance(value, dict):
            raise SampleError(f"a sample block is a map, got {type(value).__name__}")
        if value.get("type") != SAMPLE_TYPE:
            raise SampleError(f"not a mindprint sample block (type {value.get('type')!r:.60})")
        missing = sorted(REQUIRED - value.keys())
        if missing:
            raise SampleError(f"sample lacks {', '.join(missing)}")
        contributor, device, session = value["contributor"], value["device"], value["session"]
        if not isinstance(contributor, str) or len(contributor) != 42:
            raise SampleError("sample field 'contributor' must be a 0x address")
        if not isinstance(device, bytes) or len(device) != 32:
            raise SampleError("sample field 'device' must be a 32-byte Ed25519 public key")
        if not isinstance(session, str) or not 0 < len(session) <= 64:
            raise SampleError("sample field 'session' must be a session id")
        chunks = value["chunks"]
        if not isinstance(chunks, list) or not 0 < len(chunks) <= MAX_EPOCH_CHUNKS:
            raise SampleError(f"sample field 'chunks' must list 1 to {MAX_EPOCH_CHUNKS} chunk CIDs")
        if not all(isinstance(c, CID) for c in chunks):
            raise SampleError("sample field 'chunks' must hold CID links")
        if len(set(chunks)) != len(chunks):
            raise SampleError("sample field 'chunks' lists a chunk twice")
        if len(json.dumps(value["label"], default=str)) > MAX_LABEL_BYTES:
            raise SampleError(f"label exceeds {MAX_LABEL_BYTES} bytes")
        if not isinstance(value["pipeline"], str) or not isinstance(value["features"], dict):
            raise SampleError("sample fields 'pipeline' (text) and 'features' (map) are required")
        start = _int(value["start"], "start", 0, 2**31)
        stop = _int(value["stop"], "stop", start + 1, 2**31)
        stimulus = _int(value["stimulus_ns"], "stimulus_ns", 0, 2**63 - 1)
        response = _int(value["response_ns"], "response_ns", 0, 2**63 - 1)
        inference = value.get("inference")
        if inference is not None:
            output = inference.get("output") if isinstance(inference, dict) else None
            if (
                not isinstance(inference, dict)
                or set(inference) != {"model", "output"}
                or not isinstance(inference["model"], str)
                or not 0 < len(inference["model"]) <= 120
                or not isinstance(output, list)
                or not 0 < len(output) <= 64
                or not all(isinstance(v, float) and math.isfinite(v) for v in output)
            ):
                raise SampleError("sample field 'inference' must be {model: CID text, output: [1–64 finite floats]}")
        challenge = value.get("challenge")
        if challenge is not None:
            cues = challenge.get("cues_ns") if isinstance(challenge, dict) else None
            if (
                not isinstance(challenge, dict)
                or set(challenge) != {"nonce", "cues_ns"}
                or not isinstance(challenge["nonce"], str)
                or not 0 < len(challenge["nonce"]) <= 64
                or not isinstance(cues, list)
                or not 0 < len(cues) <= 3
                or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**63 for c in cues)
            ):
                raise SampleError("sample field 'challenge' must be {nonce: text, cues_ns: [1–3 device times]}")
        return cls(
            task=_int(value["task"], "task", 1, MAX_TASK_ID),
            label=value["label"],
            contributor=contributor,
            device=device,
            session=session,
            chunks=tuple(chunks),
            start=start,
            stop=stop,
            stimulus_ns=stimulus,
            response_ns=response,
            pipeline=value["pipeline"],
            features=value["features"],
            inference=inference,
            challenge=challenge,
        )

    @property
    def checksum_contributor(self) -> str:
        try:
            return str(to_checksum_address(self.contributor))
        except ValueError as err:
            raise SampleError("sample field 'contributor' is not an address") from err
