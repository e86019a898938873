"""What verifying one sample costs on one core, step by step, against issue 12's budget.

    .venv/bin/python benchmarks/floor.py [--repeats 7] [--calls 40]

The verification ``submissions.submit`` runs on every sample, in-process, with nothing
else on the machine: no HTTP, no database, no other request — the floor under
``benchmarks/api.py``'s ``cpu_ms_per_submission``. A real signed sample is built first (a
30 s session of the shipped Cyton excerpt, 8 channels at 250 Hz, written and signed by a
device key; a 4 s epoch signed by the device and the contributor's wallet), then each step
is timed on the request's data as ``submit`` calls it:

- ``decode``: the sample block's CID and DAG-CBOR (``decode_signed``)
- ``signatures``: Ed25519 over the sample CID and the wallet's EIP-712 recovery
- ``pipeline``: the epoch cut from its cited chunks and the edge pipeline re-run
  (``check_cited`` less the signatures)
- ``liveness``: ``LivenessModel.assess`` on the epoch, the pipeline's band reused
- ``replay query``: the query's fingerprints and keys (``query_set``)
- ``stored``: an accepted sample's stored fingerprints (1 s lead and the epoch) and keys

Thread CPU time, one BLAS thread (as ``serve`` runs), the median over ``--repeats`` batches
of ``--calls`` calls. Prints each step's share of the budget and the ratio of the sum to it.

Last line::

    floor: rejected_ms=X accepted_ms=Y budget_ms=12 ratio=R
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(variable, "1")
# this folder would shadow the standard library's `signal` (benchmarks/signal.py)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from eth_account import Account

from mindprint.cli import sample_path_for_demo
from mindprint.companion.samples import build_sample
from mindprint.device.bridge import DataChunk
from mindprint.device.keys import DeviceKey
from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.device.session import SessionWriter, iter_chunks, read_header, verify_session
from mindprint.labeling.samples import check_cited, decode_signed, signature_problems
from mindprint.labeling.verification.liveness import reusable_band
from mindprint.labeling.verification.model import load_default_model
from mindprint.labeling.verification.uniqueness import LEAD_SECONDS, hash_keys, query_set, stored_fingerprints

BUDGET_MS = 12.0  # issue 12: Z ≤ 12 ms of server CPU per submission
SFREQ = 250.0
T0 = 1_700_000_000_000_000_000
CHANNELS = ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")


def _session(path: Path, key: DeviceKey, data: Any, seconds: int = 30) -> Path:
    with SessionWriter.create(
        path, key, board_id=0, board_name="Cyton", sfreq=SFREQ, channels=CHANNELS, types=("eeg",) * 8,
        units=("V",) * 8, chunk_seconds=1.0, fsync=False,
    ) as writer:  # fmt: skip
        for second in range(seconds):
            chunk = data[:, second * 250 : (second + 1) * 250]
            writer.append(DataChunk(t0_ns=T0 + second * 1_000_000_000, samples=chunk, markers=()))
    return path


def _cpu_ms(step: Callable[[], Any], repeats: int, calls: int) -> float:
    step()  # warm: filter designs, lazy imports, compiled kernels
    batches = []
    for _ in range(repeats):
        started = time.thread_time()
        for _ in range(calls):
            step()
        batches.append((time.thread_time() - started) / calls * 1e3)
    return statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        key, wallet = DeviceKey.generate(), Account.create()
        data = read_openbci_gui_csv(sample_path_for_demo()).data[1:9] * 1e-6  # read once: session and lead
        session = _session(Path(tmp) / "session", key, data)
        signed = build_sample(
            session, key, wallet, task=7, label="yes",
            stimulus_ns=T0 + 10_000_000_000, response_ns=T0 + 10_600_000_000,
        )  # fmt: skip
        header, report = read_header(session), verify_session(session)
        chunks = dict(iter_chunks(session))
    value, sample = decode_signed(signed)
    cited = [chunks[cid] for cid in sample.chunks]
    contributor = wallet.address
    model = load_default_model()

    def checked() -> Any:
        return check_cited(signed, sample, header, cited, report, contributor=contributor, chain_id=1, value=value)

    check = checked()
    assert not check.problems, check.problems  # a sample that checks out: the full path
    band = reusable_band(check.filtered, check.design)
    assert model.assess(check.epoch, check.sfreq, band=band).accepted
    start = int(round((10.0 - 1.0) * SFREQ))  # the epoch's first sample in the session
    lead = data[:, start - int(LEAD_SECONDS * SFREQ) : start]
    assert abs(check.epoch - data[:, start : start + check.epoch.shape[1]]).max() < 1e-6  # the same stretch

    r, n = args.repeats, args.calls
    both = _cpu_ms(checked, r, n)
    signatures = _cpu_ms(lambda: signature_problems(signed, sample, contributor=contributor, chain_id=1), r, n)
    steps = {
        "decode": _cpu_ms(lambda: decode_signed(signed), r, n),
        "signatures": signatures,
        "pipeline": max(both - signatures, 0.0),
        "liveness": _cpu_ms(lambda: model.assess(check.epoch, check.sfreq, band=band), r, n),
        "replay query": _cpu_ms(lambda: query_set(check.epoch, check.sfreq), r, n),
    }
    stored = _cpu_ms(lambda: hash_keys(stored_fingerprints(check.epoch, check.sfreq, lead)[0]), r, n)
    rejected = sum(steps.values())
    accepted = rejected + stored

    print(f"one 4 s sample, 8 channels at {SFREQ:g} Hz; thread CPU, one BLAS thread, median of {r} × {n} calls\n")
    print("| step | ms | share of the 12 ms budget |\n|---|---|---|")
    for name, ms in [*steps.items(), ("stored (accepted only)", stored)]:
        print(f"| {name} | {ms:.2f} | {ms / BUDGET_MS:.0%} |")
    print(f"| **every sample** | **{rejected:.2f}** | **{rejected / BUDGET_MS:.0%}** |")
    print(f"| **an accepted sample** | **{accepted:.2f}** | **{accepted / BUDGET_MS:.0%}** |")
    print(
        f"\nthe issue's floor (Ed25519 and the EIP-712 recovery): {signatures:.2f} ms — the verification "
        f"itself is {rejected / max(signatures, 1e-9):.0f}× that, before HTTP, the database and other requests"
    )
    print(
        f"floor: rejected_ms={rejected:.1f} accepted_ms={accepted:.1f} budget_ms={BUDGET_MS:g} "
        f"ratio={accepted / BUDGET_MS:.2f}"
    )


if __name__ == "__main__":
    main()
