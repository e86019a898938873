"""Samples: one label bound to the EEG recorded while giving it, signed twice.

A sample is a DAG-CBOR block (ARCHITECTURE.md, provenance step 2)::

    {type, task, label, contributor, device, session, chunks: [CID…], start, stop,
     stimulus_ns, response_ns, pipeline, features}

``chunks`` link the session's chunk blocks; ``start``/``stop`` count samples from the
first of them. The device key signs the sample's binary CID (Ed25519); the contributor's
wallet signs EIP-712 typed data ``Sample(bytes32 sample,uint256 taskId,bytes32 label)``.

:func:`build_sample` runs on the edge (the companion); :func:`check_sample` on the
platform: it re-verifies the session, both signatures and the chunk references, cuts the
raw epoch out of the signed chunks and re-runs the signal pipeline to compare with what
the edge reported (``FEATURE_TOLERANCE``).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from multiformats import CID, multihash
from numpy.typing import NDArray

from mindprint.core.errors import MindprintError
from mindprint.core.ipld import cid_for_block, decode_block, encode_block, read_car
from mindprint.device.keys import DeviceKey, verify_signature
from mindprint.device.session import SESSION_FILE, SessionReport, chunk_samples, read_header, verify_session
from mindprint.signal.pipeline import PipelineParams, process_recording

SAMPLE_TYPE = "mindprint/sample/v1"
#: relative tolerance between edge and platform features (both compute from the same
#: float32 samples with the same code; the slack covers BLAS summation order)
FEATURE_TOLERANCE = 1e-4
MAX_EPOCH_SECONDS = 30.0

__all__ = ["SampleError", "SignedSample", "build_sample", "check_sample", "label_hash", "sample_typed_data"]


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
        "message": {"sample": bytes(multihash.unwrap(sample_cid.digest)), "taskId": task, "label": label_hash(label)},
    }


@dataclass(frozen=True, slots=True)
class SignedSample:
    block: bytes
    cid: CID
    device_signature: bytes
    wallet_signature: bytes

    @property
    def value(self) -> dict[str, Any]:
        return dict(decode_block(self.block))


def _session_samples(car: bytes) -> tuple[Any, dict[CID, dict[str, Any]], list[CID]]:
    contents = read_car(car)
    blocks: dict[CID, dict[str, Any]] = {}
    order: list[CID] = []
    signed: set[CID] = set()
    for section in contents.sections[1:]:
        value = decode_block(section.block)
        if isinstance(value, dict) and value.get("type") == "mindprint/chunk/v1":
            blocks[section.cid] = value
            order.append(section.cid)
        elif isinstance(value, dict) and value.get("type") == "mindprint/signature/v1":
            signs = value.get("signs")
            if isinstance(signs, CID):
                signed.add(signs)
    # a chunk whose signature did not make it into the file (still being written) does not count
    order = [cid for cid in order if cid in signed]
    blocks = {cid: blocks[cid] for cid in order}
    header = decode_block(contents.sections[0].block) if contents.sections else None
    return header, blocks, order


def _epoch(
    blocks: dict[CID, dict[str, Any]], chunks: list[CID], start: int, stop: int
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    missing = [str(c) for c in chunks if c not in blocks]
    if missing:
        raise SampleError(f"sample references chunks not in the session: {missing[:3]}")
    data = np.concatenate([chunk_samples(blocks[c]) for c in chunks], axis=1).astype(np.float64)
    if not 0 <= start < stop <= data.shape[1]:
        raise SampleError(f"sample range {start}:{stop} outside its {data.shape[1]} chunk samples")
    return data[:, start:stop], blocks[chunks[0]]


def build_sample(
    session_dir: Path,
    key: DeviceKey,
    wallet: Any,
    *,
    task: int,
    label: Any,
    stimulus_ns: int,
    response_ns: int,
    tmin: float = -1.0,
    tmax: float = 3.0,
    chain_id: int = 1,
    params: PipelineParams | None = None,
) -> SignedSample:
    """Edge side: cut the epoch around the stimulus, run the pipeline, sign."""
    header = read_header(session_dir)
    car = (session_dir / SESSION_FILE).read_bytes()
    _, blocks, order = _session_samples(car)
    sfreq = header.sfreq
    first_sample_ns = [int(blocks[c]["t0_ns"]) for c in order]
    begin_ns = stimulus_ns + int(tmin * 1e9)
    end_ns = stimulus_ns + int(tmax * 1e9)
    selected = [
        c
        for c, t0 in zip(order, first_sample_ns, strict=True)
        if t0 < end_ns and t0 + chunk_samples(blocks[c]).shape[1] / sfreq * 1e9 > begin_ns
    ]
    if not selected:
        raise SampleError("no chunk covers the stimulus")
    t0 = int(blocks[selected[0]]["t0_ns"])
    start = max(0, round((begin_ns - t0) / 1e9 * sfreq))
    stop = start + round((tmax - tmin) * sfreq)
    epoch, _ = _epoch(blocks, selected, start, stop)
    result = process_recording(epoch[header.eeg_rows], sfreq, header.eeg_names, params=params)
    value = {
        "type": SAMPLE_TYPE,
        "task": task,
        "label": label,
        "contributor": to_checksum_address(wallet.address),
        "device": key.public_key,
        "session": header.session,
        "chunks": selected,
        "start": start,
        "stop": stop,
        "stimulus_ns": stimulus_ns,
        "response_ns": response_ns,
        "pipeline": result.version,
        "features": _json_safe(result.summary()),
    }
    block = encode_block(value)
    cid = cid_for_block(block)
    typed = sample_typed_data(cid, task, label, chain_id)
    wallet_signature = bytes(Account.sign_typed_data(wallet.key, full_message=typed).signature)
    return SignedSample(block, cid, key.sign(bytes(cid)), wallet_signature)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=float))


@dataclass
class SampleCheck:
    """What the platform found: the epoch (EEG rows, volts), its rate and any problems."""

    value: dict[str, Any]
    cid: CID
    report: SessionReport
    epoch: NDArray[np.float64]
    sfreq: float
    channel_names: list[str]
    problems: list[str] = field(default_factory=list)
    recomputed: dict[str, Any] = field(default_factory=dict)


def _close(a: Any, b: Any, path: str, problems: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            _close(a.get(key), b.get(key), f"{path}.{key}", problems)
    elif isinstance(a, int | float) and isinstance(b, int | float):
        if not np.isclose(float(a), float(b), rtol=FEATURE_TOLERANCE, atol=1e-15):
            problems.append(f"edge reported {path}={a:.6g}, platform recomputed {b:.6g}")
    elif a != b:
        problems.append(f"edge reported {path}={a!r}, platform recomputed {b!r}")


def check_sample(
    signed: SignedSample, car: bytes, *, contributor: str, chain_id: int, params: PipelineParams | None = None
) -> SampleCheck:
    """Platform side: every cryptographic and computational check except scoring."""
    problems: list[str] = []
    if cid_for_block(signed.block) != signed.cid:
        raise SampleError("sample bytes do not match the sample CID")
    value = signed.value
    if value.get("type") != SAMPLE_TYPE:
        raise SampleError("not a mindprint sample block")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / SESSION_FILE).write_bytes(car)
        report = verify_session(Path(tmp))
        header = read_header(Path(tmp))
    if header.device != value.get("device") or header.session != value.get("session"):
        problems.append("the sample's device or session differs from the attached session")
    if not verify_signature(bytes(value["device"]), signed.device_signature, bytes(signed.cid)):
        problems.append("device signature on the sample is invalid")
    typed = sample_typed_data(signed.cid, int(value["task"]), value["label"], chain_id)
    try:
        signer = Account.recover_message(encode_typed_data(full_message=typed), signature=signed.wallet_signature)
    except Exception:  # eth-account raises several types for malformed signatures
        signer = None
    if (
        signer is None
        or signer != to_checksum_address(contributor)
        or value.get("contributor") != to_checksum_address(contributor)
    ):
        problems.append("wallet signature is not the signed-in contributor's")
    _, blocks, _ = _session_samples(car)
    chunks = [c if isinstance(c, CID) else CID.decode(c) for c in value["chunks"]]
    epoch, _ = _epoch(blocks, chunks, int(value["start"]), int(value["stop"]))
    sfreq = header.sfreq
    if epoch.shape[1] / sfreq > MAX_EPOCH_SECONDS:
        raise SampleError(f"epoch of {epoch.shape[1] / sfreq:.1f} s exceeds {MAX_EPOCH_SECONDS:g} s")
    eeg_rows, names = header.eeg_rows, header.eeg_names
    recomputed = _json_safe(process_recording(epoch[eeg_rows], sfreq, names, params=params).summary())
    _close(value.get("features"), recomputed, "features", problems)
    if value.get("pipeline") != recomputed.get("pipeline_version"):
        problems.append("edge pipeline version differs from the platform's")
    return SampleCheck(value, signed.cid, report, epoch[eeg_rows], sfreq, names, problems, recomputed)
