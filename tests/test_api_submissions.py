"""Submissions through the API: verified on arrival, idempotent, replays and forgeries rejected."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import select

from mindprint.api.app import create_app
from mindprint.companion.client import PlatformClient, PlatformError
from mindprint.companion.samples import build_sample
from mindprint.companion.stream import upload_recorded
from mindprint.device.boards import BoardSpec
from mindprint.device.bridge import BrainFlowSource
from mindprint.device.keys import DeviceKey
from mindprint.device.recorder import record_session
from mindprint.device.session import iter_chunks
from mindprint.labeling.store import Job, make_engine, sessions
from mindprint.protocol.formats import SignedSample, device_typed_data

from .test_api import OPERATOR, REQUESTER, _auth, _project, _settings, sign_in
from .test_samples import T0, real_session


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    app = create_app()
    settings = _settings(tmp_path, data_dir=tmp_path / "platform")
    app.state.settings = settings
    with TestClient(app) as client:
        yield client, tmp_path


def _bind(client: TestClient, token: str, wallet, key: DeviceKey) -> None:  # type: ignore[no-untyped-def]
    deadline = int(time.time()) + 600
    typed = device_typed_data(key.public_key, wallet.address, deadline, 1, "0x" + "00" * 20)
    signature = Account.sign_typed_data(wallet.key, full_message=typed).signature.to_0x_hex()
    response = client.post(
        "/devices", json={"device": key.device_id, "deadline": deadline, "signature": signature}, headers=_auth(token)
    )
    assert response.status_code == 201, response.text


def _payload(signed: SignedSample) -> dict[str, str]:
    return {
        "sample": base64.b64encode(signed.block).decode(),
        "device_signature": signed.device_signature.hex(),
        "wallet_signature": "0x" + signed.wallet_signature.hex(),
    }


def _stream(client: TestClient, token: str, session: Path) -> dict[str, object]:
    """Stream a recorded session to the platform as the companion does (encrypted chunks)."""
    companion = PlatformClient(str(client.base_url), None, http=client)
    companion.token = token
    platform_key = bytes.fromhex(client.get("/config").json()["platform_key"])
    return upload_recorded(companion, session, platform_key)


def _submit(client: TestClient, signed: SignedSample, session: Path, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    _stream(client, headers["Authorization"].removeprefix("Bearer "), session)
    return client.post("/submissions", json=_payload(signed), headers=headers)


def _contributor_sample(  # type: ignore[no-untyped-def]
    client: TestClient,
    tmp: Path,
    name: str,
    response_ms: int = 550,
    offset_seconds: int = 30,
    gap_at: int = 0,
    stimulus_ms: int = 10_000,
):
    """A new contributor: signed in, device bound, a task leased, a signed sample of real EEG for it."""
    wallet, key = Account.create(), DeviceKey.generate()
    token = sign_in(client, wallet)
    _bind(client, token, wallet, key)
    task = client.get("/tasks/next", headers=_auth(token)).json()
    session = real_session(tmp / name, key, offset_seconds=offset_seconds, gap_at=gap_at)
    signed = build_sample(
        session,
        key,
        wallet,
        task=task["id"],
        label="yes",
        stimulus_ns=T0 + stimulus_ms * 1_000_000,
        response_ns=T0 + (stimulus_ms + response_ms) * 1_000_000,
    )
    return wallet, token, session, signed


def test_real_eeg_is_accepted_once_and_replays_are_not(platform) -> None:  # type: ignore[no-untyped-def]
    client, tmp = platform
    _, ids, _ = _project(client, redundancy=2)
    wallet, token, session, signed = _contributor_sample(client, tmp, "s1")
    headers = {**_auth(token), "Idempotency-Key": "first-try"}
    first = _submit(client, signed, session, headers)
    assert first.status_code == 201, first.text
    verdict = first.json()
    assert verdict["status"] == "accepted", verdict
    assert verdict["scores"]["liveness"] > 0.5 and verdict["scores"]["authenticity"] == 1.0
    again = _submit(client, signed, session, headers)
    assert again.status_code == 201 and again.json() == verdict  # idempotent retry
    duplicate = _submit(client, signed, session, _auth(token))
    assert duplicate.status_code == 409 and "duplicate" in duplicate.json()["detail"]

    engine = make_engine(f"sqlite:///{tmp / 'platform.db'}")
    with sessions(engine)() as db:
        jobs = {(j.kind, j.ref) for j in db.scalars(select(Job))}
    assert jobs == {("pin", verdict["sample_cid"]), ("anchor", verdict["sample_cid"])}

    # the same EEG, re-signed in a new session by another device, on the next task
    task2 = client.get("/tasks/next", headers=_auth(token)).json()
    other_key = DeviceKey.generate()
    _bind(client, token, wallet, other_key)
    replayed_session = real_session(tmp / "s2", other_key)
    replay = build_sample(
        replayed_session,
        other_key,
        wallet,
        task=task2["id"],
        label="no",
        stimulus_ns=T0 + 10_000_000_000,
        response_ns=T0 + 10_700_000_000,
    )
    rejected = _submit(client, replay, replayed_session, _auth(token)).json()
    assert rejected["status"] == "rejected" and any("replay" in r for r in rejected["reasons"])

    bob = sign_in(client, Account.create())
    assert client.get(f"/submissions/{verdict['sample_cid']}", headers=_auth(bob)).status_code == 404
    assert client.get(f"/submissions/{verdict['sample_cid']}", headers=_auth(token)).json()["status"] == "accepted"
    assert ids


def test_synthetic_board_is_rejected_as_not_human(platform) -> None:  # type: ignore[no-untyped-def]
    client, tmp = platform
    _project(client, redundancy=1)
    wallet, key = Account.create(), DeviceKey.generate()
    token = sign_in(client, wallet)
    _bind(client, token, wallet, key)
    task = client.get("/tasks/next", headers=_auth(token)).json()
    session = tmp / "synthetic"
    record_session(
        BrainFlowSource(BoardSpec.create("synthetic")), session, key, duration=6.0, chunk_seconds=1.0, fsync=False
    )
    t0 = next(iter_chunks(session))[1]["t0_ns"]
    signed = build_sample(
        session,
        key,
        wallet,
        task=task["id"],
        label="yes",
        stimulus_ns=t0 + 1_500_000_000,
        response_ns=t0 + 2_000_000_000,
    )
    verdict = _submit(client, signed, session, _auth(token)).json()
    assert verdict["status"] == "rejected" and verdict["scores"]["liveness"] < 0.2, verdict
    assert any("outside the human range" in r for r in verdict["reasons"])


def test_a_sample_across_a_device_outage_is_rejected_with_its_reason(platform, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The device lost 2 s of data before chunk 11 (a declared gap the platform accepted on
    upload); a sample whose epoch spans it is not one recording and is rejected, saying why.
    Our companion does not sign such a sample (it shows the task again); a client that does
    not check — the check switched off here — is refused by the platform."""
    client, tmp = platform
    _project(client, redundancy=1)
    monkeypatch.setattr("mindprint.companion.samples.epoch_gaps", lambda chunks: [])
    _, token, session, signed = _contributor_sample(client, tmp, "gapped", gap_at=11)
    response = _submit(client, signed, session, _auth(token))
    assert response.status_code == 201, response.text
    verdict = response.json()
    assert verdict["status"] == "rejected" and verdict["scores"]["authenticity"] < 1.0, verdict
    assert any("not contiguous: 2.00 s are missing before chunk 11" in r for r in verdict["reasons"]), verdict


def test_bad_submissions_are_refused_with_reasons(platform) -> None:  # type: ignore[no-untyped-def]
    client, tmp = platform
    _project(client, redundancy=1)
    wallet, key = Account.create(), DeviceKey.generate()
    token = sign_in(client, wallet)
    session = real_session(tmp / "s", key, seconds=15)
    signed = build_sample(
        session, key, wallet, task=1, label="yes", stimulus_ns=T0 + 5_000_000_000, response_ns=T0 + 5_500_000_000
    )
    no_lease = client.post("/submissions", json=_payload(signed), headers=_auth(token))
    assert no_lease.status_code == 409 and "lease" in no_lease.json()["detail"]  # cheap checks first
    nowhere = build_sample(
        session, key, wallet, task=999, label="yes", stimulus_ns=T0 + 5_000_000_000, response_ns=T0 + 5_500_000_000
    )
    no_task = client.post("/submissions", json=_payload(nowhere), headers=_auth(token))
    assert no_task.status_code == 404 and "no task 999" in no_task.json()["detail"]
    client.get("/tasks/next", headers=_auth(token))
    not_streamed = client.post("/submissions", json=_payload(signed), headers=_auth(token))
    assert not_streamed.status_code == 422 and "not streamed" in not_streamed.json()["detail"]
    with pytest.raises(PlatformError, match="not bound") as refused:  # device never bound: no session opens
        _stream(client, token, session)
    assert refused.value.status == 422
    payload = _payload(signed)
    payload["sample"] = "not base64!"
    assert client.post("/submissions", json=payload, headers=_auth(token)).status_code == 422
    huge = {**_payload(signed), "sample": "A" * (12 * 2**20)}
    assert client.post("/submissions", json=huge, headers=_auth(token)).status_code == 413
    operator = sign_in(client, OPERATOR)
    assert client.post("/submissions", json=_payload(signed), headers=_auth(operator)).status_code == 403
    assert REQUESTER


def test_api_keys_rewards_and_sample_access(platform) -> None:  # type: ignore[no-untyped-def]
    client, tmp = platform
    _, _, owner = _project(client, redundancy=1)
    operator = sign_in(client, OPERATOR)
    key_response = client.post("/api-keys", json={"name": "exporter", "role": "requester"}, headers=_auth(operator))
    assert key_response.status_code == 201
    api_key = key_response.json()["api_key"]
    assert client.get("/projects", headers={"X-API-Key": api_key}).status_code == 200
    assert client.get("/projects", headers={"X-API-Key": "mpk_wrong"}).status_code == 401
    wallet, token, session, signed = _contributor_sample(client, tmp, "s", response_ms=500)
    verdict = _submit(client, signed, session, _auth(token)).json()
    assert verdict["status"] == "accepted", verdict
    cid = verdict["sample_cid"]
    assert client.get(f"/samples/{cid}", headers=_auth(token)).json()["contributor"] == wallet.address
    assert client.get(f"/samples/{cid}", headers=_auth(sign_in(client, Account.create()))).status_code == 404
    assert client.get(f"/samples/{cid}", headers=_auth(operator)).status_code == 200
    # a requester reads the proofs of their own projects' samples only (409: no anchoring worker here)
    assert client.get(f"/samples/{cid}/proof", headers=_auth(owner)).status_code == 409
    stranger = Account.create()
    sign_in(client, stranger)
    client.put(f"/accounts/{stranger.address}/role", json={"role": "requester"}, headers=_auth(operator))
    assert client.get(f"/samples/{cid}/proof", headers=_auth(sign_in(client, stranger))).status_code == 404
    assert client.post("/rewards/epochs", headers=_auth(token)).status_code == 403
    closed = client.post("/rewards/epochs", headers=_auth(operator))
    assert closed.status_code == 201 and closed.json()["contributors"] == 1
    assert client.post("/rewards/epochs", headers=_auth(operator)).status_code == 409  # nothing new
    mine = client.get("/rewards", headers=_auth(token)).json()
    assert mine["accepted_samples"] == 1 and mine["claims"][0]["amount"] == str(10**18)


def test_replay_index_survives_a_restart(platform) -> None:  # type: ignore[no-untyped-def]
    from mindprint.platform import service

    client, tmp = platform
    _project(client, redundancy=1)
    _, token, session, signed = _contributor_sample(client, tmp, "first")
    assert _submit(client, signed, session, _auth(token)).json()["status"] == "accepted"
    from mindprint.labeling.store import FingerprintRow, sessions

    with sessions(service._platforms[str(tmp / "platform")].engine)() as db:  # type: ignore[arg-type]
        assert [row.sample for row in db.query(FingerprintRow)] == [str(signed.cid)]

    service._platforms.clear()  # what a process restart loses: the in-memory index
    app = create_app()
    settings = _settings(tmp, data_dir=tmp / "platform")
    app.state.settings = settings
    with TestClient(app) as restarted:
        _, token2, session2, replay = _contributor_sample(restarted, tmp, "replayed")  # same EEG, new device
        verdict = _submit(restarted, replay, session2, _auth(token2)).json()
    assert verdict["status"] == "rejected" and any("replay" in r for r in verdict["reasons"]), verdict


def _accepted_alone(platform, name: str, **kwargs):  # type: ignore[no-untyped-def]
    """A project's first sample, accepted: (its session, signed sample, stored fingerprint row)."""
    from mindprint.labeling.store import FingerprintRow
    from mindprint.platform import service

    client, tmp = platform
    _project(client, redundancy=1)
    _, token, session, signed = _contributor_sample(client, tmp, name, **kwargs)
    assert _submit(client, signed, session, _auth(token)).json()["status"] == "accepted"
    with sessions(service._platforms[str(tmp / "platform")].engine)() as db:  # type: ignore[arg-type]
        (row,) = db.query(FingerprintRow).all()
    return session, signed, row


def test_a_replay_reaching_back_before_an_accepted_sample_is_caught(platform) -> None:  # type: ignore[no-untyped-def]
    """An accepted sample stores fingerprints reaching 1 s back into its session's stream — read
    from the chunk before the ones it cites (its epoch, 9–13 s, starts on a chunk boundary). A
    replay whose epoch holds only the accepted epoch's first second (too short for a 1.5 s
    fingerprint) and the 3 s before it is caught through that lead."""
    import numpy as np

    from mindprint.platform.replay import decode

    client, tmp = platform
    _, _, row = _accepted_alone(platform, "first")  # the recording's 39–43 s
    _, positions = decode(row.codes, row.positions)
    assert positions.min() == -64 and positions.max() == 160  # 1 s before the epoch on the 64 Hz grid
    assert np.sum(positions < 0) == 8 * 16

    _, token2, session2, replay = _contributor_sample(client, tmp, "earlier", offset_seconds=27)  # 36–40 s
    verdict = _submit(client, replay, session2, _auth(token2)).json()
    assert any("replay" in r for r in verdict["reasons"]), verdict
    assert verdict["status"] == "rejected"


@pytest.mark.parametrize("stimulus_ms", [10_000, 10_500])
def test_the_stored_lead_is_the_second_before_the_epoch(platform, stimulus_ms: int) -> None:  # type: ignore[no-untyped-def]
    """Wherever the epoch starts — on a chunk boundary (its lead read from the chunk before the
    cited ones) or half-way into a chunk (half from the cited chunk, half from the one before) —
    what is stored is the fingerprints of the second before it and the epoch as one stretch."""
    import numpy as np

    from mindprint.labeling.verification.uniqueness import stored_fingerprints
    from mindprint.platform.replay import decode, encode

    session, signed, row = _accepted_alone(platform, "first", stimulus_ms=stimulus_ms)
    # the EEG the device streamed (the session's chunks, in order) and the sample's range in it
    from mindprint.device.session import chunk_samples, read_header
    from mindprint.labeling.samples import parse_signed

    header = read_header(session)
    chunks = list(iter_chunks(session))
    sample = parse_signed(signed)
    first_cited = [cid for cid, _ in chunks].index(sample.chunks[0])
    data = np.concatenate([chunk_samples(chunk) for _, chunk in chunks], axis=1)[header.eeg_rows]
    first = sum(chunk_samples(chunk).shape[1] for _, chunk in chunks[:first_cited]) + sample.start
    assert (sample.start > 0) == (stimulus_ms != 10_000)  # part of the lead is in the cited chunks
    lead = data[:, first - round(header.sfreq) : first]
    epoch = data[:, first : first + sample.stop - sample.start].astype(np.float64)
    assert (row.codes, row.positions) == encode(*stored_fingerprints(epoch, header.sfreq, lead.astype(np.float64)))
    assert decode(row.codes, row.positions)[1].min() == -64


@pytest.mark.parametrize("gap_at", [8, 9])
def test_a_stored_lead_never_reaches_across_a_gap(platform, gap_at: int) -> None:  # type: ignore[no-untyped-def]
    """The device lost 2 s before chunk 8 or 9: the sample's epoch begins at that chunk, and
    what came before the gap is not the EEG that preceded it — nothing of it is stored."""
    from mindprint.platform.replay import decode

    _, _, row = _accepted_alone(platform, "gap", gap_at=gap_at)
    assert decode(row.codes, row.positions)[1].min() == 0


def test_a_replay_accepted_by_one_replica_is_caught_by_another(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two platforms (two API processes) on one database: EEG accepted through A and
    replayed through B is caught by B's query of the shared index; and when B's query ran
    before A's commit (the race of two replicas), the guard step catches it."""
    from mindprint.labeling import submissions

    def replica(name: str) -> TestClient:
        app = create_app()
        settings = _settings(tmp_path, data_dir=tmp_path / name)
        app.state.settings = settings
        return TestClient(app)

    with replica("a") as a, replica("b") as b:
        _project(a, redundancy=3)
        _, token, session, signed = _contributor_sample(a, tmp_path, "first")
        assert _submit(a, signed, session, _auth(token)).json()["status"] == "accepted"
        _, token, session, replay = _contributor_sample(b, tmp_path, "replayed")  # same EEG, new device
        verdict = _submit(b, replay, session, _auth(token)).json()
        assert verdict["status"] == "rejected" and any("replay" in r for r in verdict["reasons"]), verdict
        # the race: B's query reads the index before A's next acceptance commits (it saw row 1 only)
        _, token, session, fresh = _contributor_sample(a, tmp_path, "second", offset_seconds=40)
        assert _submit(a, fresh, session, _auth(token)).json()["status"] == "accepted"
        from mindprint.platform.replay import Lookup

        monkeypatch.setattr(submissions, "lookup", lambda db, queries, cid, rule: Lookup(None, None, 1, 0))
        _, token, session, raced = _contributor_sample(b, tmp_path, "raced", offset_seconds=40)
        verdict = _submit(b, raced, session, _auth(token)).json()
        assert verdict["status"] == "rejected" and any("replay" in r for r in verdict["reasons"]), verdict
