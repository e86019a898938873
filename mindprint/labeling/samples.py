"""Platform side of a sample: both signatures, the cited chunks, the pipeline re-run.

A sample (format in :mod:`mindprint.protocol.formats`) cites consecutive signed chunks of
its session and a sample range inside them. :func:`check_cited` takes exactly those
chunks (the platform verified each on arrival, see :mod:`mindprint.platform.ingest`),
checks the device and wallet signatures, cuts the raw epoch and re-runs the signal
pipeline to compare with what the edge reported (``FEATURE_TOLERANCE``). Its cost does
not depend on how long the session is.

:func:`check_sample` is the same check against a whole session CAR (samples submitted
before sessions were streamed, and offline tools).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from multiformats import CID
from numpy.typing import NDArray

from mindprint.companion.samples import build_sample, json_safe
from mindprint.core.errors import SessionFormatError
from mindprint.core.ipld import cid_for_block, decode_block, read_car
from mindprint.device.keys import verify_signature
from mindprint.device.session import (
    SESSION_FILE,
    SessionHeader,
    SessionReport,
    chunk_samples,
    epoch_gaps,
    read_header,
    verify_session,
)
from mindprint.protocol.formats import SAMPLE_TYPE, SampleError, SampleValue, SignedSample, sample_typed_data
from mindprint.signal.filters import FilterDesign
from mindprint.signal.pipeline import PipelineParams, process_recording

#: relative tolerance between edge and platform features (both compute from the same
#: float32 samples with the same code; the slack covers BLAS summation order)
FEATURE_TOLERANCE = 1e-4
MAX_EPOCH_SECONDS = 30.0

__all__ = [
    "SAMPLE_TYPE",
    "SampleCheck",
    "SampleError",
    "SignedSample",
    "build_sample",
    "check_cited",
    "check_sample",
    "sample_typed_data",
]


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
    sample: SampleValue | None = None
    t0_ns: int = 0  # device time of the epoch's first sample
    #: the epoch through the pipeline's filter, and that filter (liveness reuses it when it
    #: band-passes alike, :func:`~mindprint.labeling.verification.liveness.shares_band`)
    filtered: NDArray[np.float64] | None = None
    design: FilterDesign | None = None


def _close(a: Any, b: Any, path: str, problems: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            _close(a.get(key), b.get(key), f"{path}.{key}", problems)
    elif isinstance(a, int | float) and isinstance(b, int | float):
        x, y = float(a), float(b)  # np.isclose's test, on two scalars (np.isclose: ~35 µs a call)
        if not (x == y or (math.isfinite(y) and abs(x - y) <= 1e-15 + FEATURE_TOLERANCE * abs(y))):
            problems.append(f"edge reported {path}={a:.6g}, platform recomputed {b:.6g}")
    elif a != b:
        problems.append(f"edge reported {path}={a!r:.80}, platform recomputed {b!r:.80}")


def parse_signed(signed: SignedSample) -> SampleValue:
    """The sample's fields, after checking its bytes against its CID (``SampleError`` if not)."""
    return decode_signed(signed)[1]


def decode_signed(signed: SignedSample) -> tuple[dict[str, Any], SampleValue]:
    """The sample block decoded and its fields checked (:func:`parse_signed`), both kept."""
    if cid_for_block(signed.block) != signed.cid:
        raise SampleError("sample bytes do not match the sample CID")
    try:
        value = decode_block(signed.block)
    except SessionFormatError as err:
        raise SampleError(f"sample block is not DAG-CBOR: {err}") from err
    return dict(value) if isinstance(value, dict) else value, SampleValue.parse(value)


def signature_problems(signed: SignedSample, sample: SampleValue, *, contributor: str, chain_id: int) -> list[str]:
    """The device signature over the sample CID and the wallet's EIP-712 signature."""
    problems = []
    if not verify_signature(sample.device, signed.device_signature, bytes(signed.cid)):
        problems.append("device signature on the sample is invalid")
    typed = sample_typed_data(signed.cid, sample.task, sample.label, chain_id)
    try:
        signer = Account.recover_message(encode_typed_data(full_message=typed), signature=signed.wallet_signature)
    except Exception:  # eth-account raises several types for malformed signatures or labels
        signer = None
    expected = to_checksum_address(contributor)
    if signer is None or signer != expected or sample.contributor != expected:
        problems.append("wallet signature is not the signed-in contributor's")
    return problems


def cut_epoch(sample: SampleValue, header: SessionHeader, chunks: Sequence[dict[str, Any]]) -> NDArray[np.float64]:
    """The sample's EEG (eeg channels × its range) from the decoded chunks it cites, in order."""
    try:
        data = np.concatenate([chunk_samples(block) for block in chunks], axis=1)
    except (SessionFormatError, ValueError) as err:
        raise SampleError(f"cited chunks do not hold samples of one layout: {err}") from err
    if sample.stop > data.shape[1]:
        raise SampleError(f"sample range {sample.start}:{sample.stop} outside its {data.shape[1]} chunk samples")
    if (sample.stop - sample.start) / header.sfreq > MAX_EPOCH_SECONDS:
        raise SampleError(
            f"epoch of {(sample.stop - sample.start) / header.sfreq:.1f} s exceeds {MAX_EPOCH_SECONDS:g} s"
        )
    return data[header.eeg_rows, sample.start : sample.stop].astype(np.float64)


def check_cited(
    signed: SignedSample,
    sample: SampleValue,
    header: SessionHeader,
    chunks: Sequence[dict[str, Any]],
    report: SessionReport,
    *,
    contributor: str,
    chain_id: int,
    params: PipelineParams | None = None,
    models: Callable[[str], Any] | None = None,
    value: dict[str, Any] | None = None,
) -> SampleCheck:
    """Check a sample against the decoded chunks it cites (consecutive, in its order).

    ``models`` loads a model by CID, to re-execute a sample's on-device inference; ``value``
    is the decoded sample block if the caller has it (:func:`decode_signed`).
    """
    problems = []
    if header.device != sample.device or header.session != sample.session:
        problems.append("the sample's device or session differs from its session")
    problems += signature_problems(signed, sample, contributor=contributor, chain_id=chain_id)
    problems += epoch_gaps(chunks)
    epoch = cut_epoch(sample, header, chunks)
    names = header.eeg_names
    result = process_recording(epoch, header.sfreq, names, params=params)
    recomputed = json_safe(result.summary())
    _close(sample.features, recomputed, "features", problems)
    if sample.inference is not None:
        from mindprint.federated.inference import inference_problems

        problems += inference_problems(sample.inference, result.filtered, names, models)
    if sample.pipeline != recomputed.get("pipeline_version"):
        problems.append("edge pipeline version differs from the platform's")
    value = dict(decode_block(signed.block)) if value is None else value
    t0_ns = int(chunks[0].get("t0_ns", 0)) + round(sample.start / header.sfreq * 1e9)
    return SampleCheck(
        value, signed.cid, report, epoch, header.sfreq, names, problems, recomputed, sample, t0_ns,
        result.filtered, result.design,
    )  # fmt: skip


def _signed_chunks(car: bytes) -> dict[CID, dict[str, Any]]:
    contents = read_car(car)
    blocks: dict[CID, dict[str, Any]] = {}
    signed: set[CID] = set()
    for section in contents.sections[1:]:
        value = decode_block(section.block)
        if isinstance(value, dict) and value.get("type") == "mindprint/chunk/v1":
            blocks[section.cid] = value
        elif (
            isinstance(value, dict)
            and value.get("type") == "mindprint/signature/v1"
            and isinstance(value.get("signs"), CID)
        ):
            signed.add(value["signs"])
    # a chunk whose signature did not make it into the file (still being written) does not count
    return {cid: block for cid, block in blocks.items() if cid in signed}


def check_sample(
    signed: SignedSample,
    car: bytes,
    *,
    contributor: str,
    chain_id: int,
    params: PipelineParams | None = None,
    models: Callable[[str], Any] | None = None,
) -> SampleCheck:
    """:func:`check_cited` against a whole session CAR (verified here first)."""
    value, sample = decode_signed(signed)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / SESSION_FILE).write_bytes(car)
        report = verify_session(Path(tmp))
        header = read_header(Path(tmp))
    blocks = _signed_chunks(car)
    missing = [str(c) for c in sample.chunks if c not in blocks]
    if missing:
        raise SampleError(f"sample references chunks not in the session: {missing[:3]}")
    cited = [blocks[c] for c in sample.chunks]
    return check_cited(
        signed, sample, header, cited, report,
        contributor=contributor, chain_id=chain_id, params=params, models=models, value=value,
    )  # fmt: skip
