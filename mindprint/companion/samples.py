"""Edge side of a sample: cut the epoch from signed chunks, run the pipeline, sign twice.

The companion calls :func:`sign_sample` with the chunks it holds in memory (it never
reads its session file back while recording); :func:`build_sample` does the same from a
session directory, for offline use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account
from eth_utils import to_checksum_address
from multiformats import CID

from mindprint.core.ipld import cid_for_block, encode_block
from mindprint.device.keys import DeviceKey
from mindprint.device.session import SessionHeader, chunk_samples, epoch_gaps, iter_chunks, read_header
from mindprint.protocol.formats import SAMPLE_TYPE, SampleError, SignedSample, sample_typed_data
from mindprint.signal.pipeline import PipelineParams, process_recording

__all__ = ["EpochNotContiguous", "build_sample", "json_safe", "sign_sample"]


class EpochNotContiguous(SampleError):
    """The epoch spans a gap the device declared (data lost mid-trial): the platform would
    reject the sample, so it is not signed (:class:`~mindprint.companion.run.LabelingRun`
    repeats the trial)."""


def json_safe(value: Any) -> Any:
    """Features as plain JSON numbers (what the sample block carries)."""
    return json.loads(json.dumps(value, default=float))


def sign_sample(
    header: SessionHeader,
    chunks: Sequence[tuple[CID, dict[str, Any]]],
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
    model: tuple[str, Any] | None = None,
    on_epoch: Callable[[Any], None] | None = None,
    challenge: dict[str, Any] | None = None,
) -> SignedSample:
    """Cut ``[stimulus + tmin, stimulus + tmax)`` from ``chunks`` (consecutive, in order), sign it.

    Parameters
    ----------
    chunks : sequence of (CID, decoded chunk)
        Consecutive signed chunks of the session that cover the epoch (extra chunks
        before or after are dropped).
    model : (CID text, model), optional
        Run this model on the epoch and sign its output with the sample (on-device
        inference the platform re-executes, :mod:`mindprint.federated.inference`).
    on_epoch : callable, optional
        Called with the pipeline's filtered epoch (volts, EEG rows), e.g. to keep it on
        the device for federated training.
    challenge : {"nonce": text, "cues_ns": [device times]}, optional
        The lease's challenge answered: signed with the sample.
    """
    sfreq = header.sfreq
    begin_ns = stimulus_ns + int(tmin * 1e9)
    n_epoch = round((tmax - tmin) * sfreq)
    # the first chunk that covers the epoch's start, then consecutive chunks until they hold
    # the epoch's samples (counted in samples: device timestamps jitter)
    ends = (int(block["t0_ns"]) + chunk_samples(block).shape[1] / sfreq * 1e9 for _, block in chunks)
    first = next((i for i, end in enumerate(ends) if end > begin_ns), None)
    if first is None:
        raise SampleError("no chunk covers the stimulus")
    t0 = int(chunks[first][1]["t0_ns"])
    start = max(0, round((begin_ns - t0) / 1e9 * sfreq))
    stop = start + n_epoch
    selected: list[tuple[CID, dict[str, Any]]] = []
    held = 0
    for chunk_cid, chunk in chunks[first:]:
        if held >= stop:
            break
        selected.append((chunk_cid, chunk))
        held += chunk_samples(chunk).shape[1]
    if held < stop:
        raise SampleError(f"the chunks hold {held} samples, the epoch needs {stop}")
    gaps = epoch_gaps([chunk for _, chunk in selected])
    if gaps:
        raise EpochNotContiguous("; ".join(gaps))
    data = np.concatenate([chunk_samples(block) for _, block in selected], axis=1).astype(np.float64)
    result = process_recording(data[header.eeg_rows, start:stop], sfreq, header.eeg_names, params=params)
    value = {
        "type": SAMPLE_TYPE,
        "task": task,
        "label": label,
        "contributor": to_checksum_address(wallet.address),
        "device": key.public_key,
        "session": header.session,
        "chunks": [cid for cid, _ in selected],
        "start": start,
        "stop": stop,
        "stimulus_ns": stimulus_ns,
        "response_ns": response_ns,
        "pipeline": result.version,
        "features": json_safe(result.summary()),
    }
    if on_epoch is not None:
        on_epoch(result.filtered)
    if model is not None:
        from mindprint.federated.inference import infer

        value["inference"] = infer(model[1], model[0], result.filtered, header.eeg_names)
    if challenge is not None:
        value["challenge"] = {"nonce": str(challenge["nonce"]), "cues_ns": [int(c) for c in challenge["cues_ns"]]}
    block = encode_block(value)
    cid = cid_for_block(block)
    typed = sample_typed_data(cid, task, label, chain_id)
    wallet_signature = bytes(Account.sign_typed_data(wallet.key, full_message=typed).signature)
    return SignedSample(block, cid, key.sign(bytes(cid)), wallet_signature)


def build_sample(session_dir: Path, key: DeviceKey, wallet: Any, **kwargs: Any) -> SignedSample:
    """:func:`sign_sample` over a session directory's chunks (reads the whole file: offline use)."""
    return sign_sample(read_header(session_dir), list(iter_chunks(session_dir)), key, wallet, **kwargs)
