"""Samples: built and signed on the edge, re-checked (and recomputed) on the platform."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account

from mindprint.companion.samples import EpochNotContiguous, build_sample
from mindprint.core.ipld import cid_for_block, decode_block, encode_block
from mindprint.device.bridge import DataChunk, Gap
from mindprint.device.keys import DeviceKey
from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.device.session import SESSION_FILE, SessionWriter
from mindprint.labeling.samples import SampleError, check_sample

from .conftest import CYTON_CSV, require

T0 = 1_700_000_000_000_000_000


def real_session(
    path: Path, key: DeviceKey, seconds: int = 30, offset_seconds: int = 30, tail: int = 0, gap_at: int = 0
) -> Path:
    """A signed session of real Cyton EEG (written directly, not replayed in real time);
    ``tail`` samples more in a short last chunk; ``gap_at``: the device lost 2 s of data
    before that chunk (a declared gap)."""
    data = read_openbci_gui_csv(require(CYTON_CSV)).data[1:9] * 1e-6
    with SessionWriter.create(
        path,
        key,
        board_id=0,
        board_name="Cyton",
        sfreq=250.0,
        channels=("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"),
        types=("eeg",) * 8,
        units=("V",) * 8,
        chunk_seconds=1.0,
        fsync=False,
    ) as writer:
        for second in range(seconds):
            start = (offset_seconds + second) * 250
            t0 = T0 + (second + (2 if gap_at and second >= gap_at else 0)) * 1_000_000_000
            gap = Gap(t0 - 2_004_000_000, t0, "device timestamps jump by 2.000 s") if gap_at == second else None
            writer.append(DataChunk(t0_ns=t0, samples=data[:, start : start + 250], markers=(), gap=gap))
        if tail:
            start = (offset_seconds + seconds) * 250
            writer.append(
                DataChunk(t0_ns=T0 + seconds * 1_000_000_000, samples=data[:, start : start + tail], markers=())
            )
    return path


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    key = DeviceKey.generate()
    wallet = Account.create()
    session = real_session(tmp_path / "s", key)
    signed = build_sample(
        session, key, wallet, task=7, label="yes", stimulus_ns=T0 + 10_000_000_000, response_ns=T0 + 10_600_000_000
    )
    return session, key, wallet, signed


def test_a_good_sample_checks_out_and_matches_the_edge(setup) -> None:  # type: ignore[no-untyped-def]
    session, key, wallet, signed = setup
    check = check_sample(signed, (session / SESSION_FILE).read_bytes(), contributor=wallet.address, chain_id=1)
    assert check.problems == [] and check.report.ok
    assert check.epoch.shape == (8, 1000)  # -1 s .. +3 s at 250 Hz
    assert check.value["features"]["pipeline_version"] == check.recomputed["pipeline_version"]
    assert check.value["device"] == key.public_key


def test_a_sample_across_a_declared_gap_is_not_contiguous_eeg(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """2 s of data lost before chunk 11: a sample whose epoch spans it would join EEG from
    either side as if recorded one after the other. The companion refuses to sign it; signed
    by a client that does not check (the check switched off), the platform finds it; one after
    the gap checks out."""
    key, wallet = DeviceKey.generate(), Account.create()
    session = real_session(tmp_path / "s", key, gap_at=11)
    car = (session / SESSION_FILE).read_bytes()
    stimulus_ns = T0 + 10_600_000_000
    with pytest.raises(EpochNotContiguous, match=r"2\.00 s are missing before chunk 11"):
        build_sample(session, key, wallet, task=7, label="yes", stimulus_ns=stimulus_ns, response_ns=stimulus_ns)
    monkeypatch.setattr("mindprint.companion.samples.epoch_gaps", lambda chunks: [])
    for stimulus_s, problems in (
        (10.6, ["the sample's EEG is not contiguous: 2.00 s are missing before chunk 11"]),
        (16.0, []),
    ):
        stimulus_ns = T0 + int(stimulus_s * 1e9)
        signed = build_sample(
            session, key, wallet, task=7, label="yes", stimulus_ns=stimulus_ns, response_ns=stimulus_ns + 600_000_000
        )
        check = check_sample(signed, car, contributor=wallet.address, chain_id=1)
        assert check.problems == problems and check.report.ok


def test_another_wallet_cannot_submit_it(setup) -> None:  # type: ignore[no-untyped-def]
    session, _, _, signed = setup
    check = check_sample(
        signed, (session / SESSION_FILE).read_bytes(), contributor=Account.create().address, chain_id=1
    )
    assert any("wallet signature" in p for p in check.problems)


def test_edge_features_that_were_not_computed_from_the_epoch_are_caught(setup) -> None:  # type: ignore[no-untyped-def]
    session, key, wallet, signed = setup
    value = decode_block(signed.block)
    value["features"]["relative_power"]["alpha"] *= 1.5  # the edge lies about alpha
    block = encode_block(value)
    cid = cid_for_block(block)
    from eth_account import Account as _A

    from mindprint.labeling.samples import sample_typed_data

    forged = replace(
        signed,
        block=block,
        cid=cid,
        device_signature=key.sign(bytes(cid)),
        wallet_signature=bytes(
            _A.sign_typed_data(wallet.key, full_message=sample_typed_data(cid, 7, "yes", 1)).signature
        ),
    )
    check = check_sample(forged, (session / SESSION_FILE).read_bytes(), contributor=wallet.address, chain_id=1)
    assert any("relative_power.alpha" in p for p in check.problems)


def test_bad_bundles_are_refused(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    session, _, wallet, signed = setup
    car = (session / SESSION_FILE).read_bytes()
    with pytest.raises(SampleError, match="CID"):
        check_sample(replace(signed, block=signed.block + b"x"), car, contributor=wallet.address, chain_id=1)
    other = real_session(tmp_path / "other", DeviceKey.generate(), seconds=5)
    with pytest.raises(SampleError, match="not in the session"):
        check_sample(signed, (other / SESSION_FILE).read_bytes(), contributor=wallet.address, chain_id=1)
    bad_sig = replace(signed, device_signature=bytes(64))
    assert any(
        "device signature" in p for p in check_sample(bad_sig, car, contributor=wallet.address, chain_id=1).problems
    )
    assert np.isfinite(check_sample(signed, car, contributor=wallet.address, chain_id=1).epoch).all()
