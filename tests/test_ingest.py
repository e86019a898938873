"""Streamed sessions: each chunk verified once on arrival, samples cite chunks, nothing lost.

- chunk uploads: encrypted envelopes, idempotent per seq, every forgery refused with a reason;
- submissions: one transaction, Idempotency-Key bound to the body, labels checked, cheap checks first;
- a companion labeling ten trials while the platform is down for 60 s: nothing lost, distinct epochs;
- ``mindprint serve`` killed with SIGKILL in a burst: every 2xx submission anchored exactly once;
- the companion and the verifier import no server stack.
"""

from __future__ import annotations

import base64
import concurrent.futures
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from mindprint.api.app import create_app
from mindprint.api.server import ServerThread, free_port, start_platform
from mindprint.companion.client import PlatformClient
from mindprint.companion.run import LabelingRun
from mindprint.companion.samples import build_sample
from mindprint.core.errors import MindprintError
from mindprint.core.ipld import cid_for_block, cid_text, encode_block, read_car
from mindprint.device.boards import BoardSpec
from mindprint.device.bridge import BrainFlowSource, DataChunk
from mindprint.device.keys import DeviceKey
from mindprint.device.session import SESSION_FILE, SessionWriter, chunk_block, iter_chunks
from mindprint.ledger.crypto import new_data_key, wrap_key
from mindprint.protocol.formats import seal_chunk

from .conftest import Dropout
from .test_api import OPERATOR, _auth, _project, _settings, live_project, sign_in
from .test_api_submissions import _bind, _payload, _stream
from .test_samples import T0, real_session


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    app = create_app()
    settings = _settings(tmp_path, data_dir=tmp_path / "platform")
    app.state.settings = settings
    with TestClient(app) as client:
        yield client, tmp_path


def _contributor(client: TestClient):  # type: ignore[no-untyped-def]
    wallet, key = Account.create(), DeviceKey.generate()
    token = sign_in(client, wallet)
    _bind(client, token, wallet, key)
    return wallet, key, token


def _open(client: TestClient, token: str, session: Path) -> tuple[bytes, str, list]:  # type: ignore[type-arg]
    """Open a session by hand; returns its data key, id and the (cid, block, signature) of its chunks."""
    contents = read_car((session / SESSION_FILE).read_bytes())
    header = contents.sections[0]
    signatures = {}
    chunks = []
    from mindprint.core.ipld import decode_block

    for section in contents.sections[1:]:
        value = decode_block(section.block)
        if value.get("type") == "mindprint/signature/v1":
            signatures[value["signs"]] = bytes(value["signature"])
        else:
            chunks.append((section.cid, section.block))
    platform_key = bytes.fromhex(client.get("/config").json()["platform_key"])
    session_id = decode_block(header.block)["session"]
    data_key = new_data_key()
    body = {
        "header": base64.b64encode(header.block).decode(),
        "signature": signatures[header.cid].hex(),
        "wrapped_key": wrap_key(data_key, platform_key, session_id).to_dict(),
    }
    opened = client.post("/sessions", json=body, headers=_auth(token))
    assert opened.status_code == 201, opened.text
    again = client.post("/sessions", json=body, headers=_auth(token))
    assert again.status_code == 201 and again.json()["next_seq"] == 0  # idempotent
    return data_key, session_id, [(cid, block, signatures[cid]) for cid, block in chunks]


def _put(client: TestClient, token: str, session: str, seq: int, cid, block: bytes, sig: bytes, key: bytes):  # type: ignore[no-untyped-def]
    body = {
        "cid": cid_text(cid),
        "signature": sig.hex(),
        "envelope": base64.b64encode(seal_chunk(key, session, cid, block)).decode(),
    }
    return client.put(f"/sessions/{session}/chunks/{seq}", json=body, headers=_auth(token))


def test_chunks_are_verified_once_and_forgeries_refused(platform) -> None:  # type: ignore[no-untyped-def]
    client, tmp = platform
    _project(client)
    _, key, token = _contributor(client)
    session = real_session(tmp / "s", key, seconds=6)
    data_key, sid, chunks = _open(client, token, session)
    cid0, block0, sig0 = chunks[0]

    ahead = _put(client, token, sid, 1, *chunks[1], data_key)
    assert ahead.status_code == 409 and "in order" in ahead.json()["detail"]
    bad_sig = _put(client, token, sid, 0, cid0, block0, bytes(64), data_key)
    assert bad_sig.status_code == 422 and "bad-signature" in bad_sig.json()["detail"]
    wrong_key = _put(client, token, sid, 0, cid0, block0, sig0, new_data_key())
    assert wrong_key.status_code == 422 and "does not open" in wrong_key.json()["detail"]
    other_cid = _put(client, token, sid, 0, chunks[1][0], block0, sig0, data_key)
    assert other_cid.status_code == 422

    first = _put(client, token, sid, 0, cid0, block0, sig0, data_key)
    assert first.status_code == 200 and first.json() == {
        "session": sid,
        "next_seq": 1,
        "last_cid": cid_text(cid0),
        "stored": True,
    }
    retry = _put(client, token, sid, 0, cid0, block0, sig0, data_key)  # a retry after a lost answer
    assert retry.status_code == 200 and retry.json()["stored"] is False
    other = _put(client, token, sid, 0, *chunks[1], data_key)
    assert other.status_code == 409

    # a chunk signed by the device but starting 5 s late without a declared gap: timing
    forger = SessionWriter.resume(session, key, fsync=False)
    forged_value = chunk_block(
        forger.header,
        1,
        DataChunk(t0_ns=T0 + 6_000_000_000, samples=[[0.0] * 250] * 8, markers=()),  # type: ignore[arg-type]
        cid0,
    )
    forger.close()
    forged = encode_block(forged_value)
    forged_cid = cid_for_block(forged)
    late = _put(client, token, sid, 1, forged_cid, forged, key.sign(bytes(forged_cid)), data_key)
    assert late.status_code == 422 and "timing" in late.json()["detail"]
    for seq, chunk in enumerate(chunks[1:], start=1):
        assert _put(client, token, sid, seq, *chunk, data_key).status_code == 200
    state = client.get(f"/sessions/{sid}", headers=_auth(token)).json()
    assert state["next_seq"] == len(chunks)
    stranger = sign_in(client, Account.create())
    assert client.get(f"/sessions/{sid}", headers=_auth(stranger)).status_code == 404
    assert _put(client, stranger, sid, 6, *chunks[0], data_key).status_code in (403, 404)


def test_submission_is_one_transaction_bound_to_its_body(platform) -> None:  # type: ignore[no-untyped-def]
    client, tmp = platform
    _project(client, redundancy=1)
    wallet, key, token = _contributor(client)
    task = client.get("/tasks/next", headers=_auth(token)).json()
    session = real_session(tmp / "s", key, seconds=20)
    _stream(client, token, session)

    def sample(label: object, second: int = 10):  # type: ignore[no-untyped-def]
        stimulus = T0 + second * 1_000_000_000
        return build_sample(
            session, key, wallet, task=task["id"], label=label, stimulus_ns=stimulus, response_ns=stimulus + 6 * 10**8
        )

    html = client.post("/submissions", json=_payload(sample({"<b>": "yes"})), headers=_auth(token))
    assert html.status_code == 422 and "not one of the project's classes" in html.json()["detail"]
    good = sample("yes")
    headers = {**_auth(token), "Idempotency-Key": "k1"}
    first = client.post("/submissions", json=_payload(good), headers=headers)
    assert first.status_code == 201 and first.json()["status"] == "accepted", first.text
    other_body = client.post("/submissions", json=_payload(sample("no", 12)), headers=headers)
    assert other_body.status_code == 422 and "another request body" in other_body.json()["detail"]
    assert client.post("/submissions", json=_payload(good), headers=headers).json() == first.json()

    from sqlalchemy import select

    from mindprint.labeling.store import IdempotentRequest, Job, Submission, sessions
    from mindprint.platform.service import engine_for

    with sessions(engine_for(_settings(tmp, data_dir=tmp / "platform")))() as db:
        row = db.get(Submission, first.json()["sample_cid"])
        assert row is not None and row.sealed_manifest is not None
        assert {j.kind for j in db.scalars(select(Job).where(Job.ref == row.cid))} == {"pin", "anchor"}
        assert db.get(IdempotentRequest, f"{wallet.address}:k1") is not None


def test_concurrent_replays_cannot_both_pass(platform) -> None:  # type: ignore[no-untyped-def]
    client, tmp = platform
    _project(client, redundancy=2)
    bundles = []
    for name in ("a", "b"):
        wallet, key, token = _contributor(client)
        task = client.get("/tasks/next", headers=_auth(token)).json()
        session = real_session(tmp / name, key, seconds=20)  # the same EEG, two devices
        _stream(client, token, session)
        signed = build_sample(
            session,
            key,
            wallet,
            task=task["id"],
            label="yes",
            stimulus_ns=T0 + 10**10,
            response_ns=T0 + 10**10 + 6 * 10**8,
        )
        bundles.append((_payload(signed), _auth(token)))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda b: client.post("/submissions", json=b[0], headers=b[1]).json(), bundles))
    assert sorted(a["status"] for a in answers) == ["accepted", "rejected"], answers


def test_ten_trials_through_a_60_second_outage(tmp_path: Path) -> None:
    """Ten trials; the platform goes down for 60 s in the middle of the fourth: nothing is lost."""
    settings = _settings(tmp_path, data_dir=tmp_path / "platform")
    running = start_platform(settings, worker_interval=0.5)
    port = free_port()
    server = ServerThread(running.app, port=port).__enter__()
    try:
        schema = {"kind": "classes", "classes": ["yes", "no"]}
        live_project(server.url, {"name": "ten", "label_schema": schema, "redundancy": 1}, 10)

        wallet, key = Account.create(), DeviceKey.generate()
        client = PlatformClient(server.url, wallet, timeout=10)
        client.sign_in()
        client.bind_device(key)
        outage: dict[str, float] = {}

        def restart() -> None:
            nonlocal server
            time.sleep(60)
            server = ServerThread(running.app, port=port).__enter__()
            outage["up"] = time.monotonic()

        def answer(task: dict) -> str:  # type: ignore[type-arg]
            nonlocal server
            if len(trials) == 3:  # the platform goes away while the fourth task is answered
                server.__exit__(None, None, None)
                outage["down"] = time.monotonic()
                threading.Thread(target=restart, daemon=True).start()
            return "yes"

        trials: list = []  # type: ignore[type-arg]
        source = BrainFlowSource(BoardSpec.create("synthetic"))
        with LabelingRun(client, source, key, tmp_path / "session", chain_id=1, outage_seconds=300) as run:
            for _ in range(10):
                task = client.next_task()
                assert task is not None
                trials.append(run.trial(task, answer))
        written = run.index.count  # the run has stopped and the uploader drained
        assert outage["up"] - outage["down"] >= 60
        assert run.uploader.outages > 0  # the uploader did meet the outage
        assert len(trials) == 10 and all(t.verdict["sample_cid"] for t in trials)
        # every chunk written is on the platform, in order, the same bytes the device signed
        local = [cid_text(cid) for cid, _ in iter_chunks(tmp_path / "session")]
        assert len(local) == written
        state = client.session_state(run.index.header.session)  # type: ignore[union-attr]
        assert state["next_seq"] == written and state["last_cid"] == local[-1]
        # ten distinct, non-overlapping epochs, each after its own stimulus marker
        stimuli = [t.stimulus_ns for t in trials]
        assert all(b - a >= 4 * 10**9 for a, b in itertools.pairwise(stimuli)), stimuli
        assert len({t.verdict["sample_cid"] for t in trials}) == 10
        assert not any("replay" in r for t in trials for r in t.verdict["reasons"])
    finally:
        server.__exit__(None, None, None)
        running.close()


def _answering(asked: list[int]):  # type: ignore[no-untyped-def]
    """An answerer that takes 0.3 s (a human's response time) and notes each task it was asked."""

    def answer(task: dict) -> str:  # type: ignore[type-arg]
        asked.append(int(task["id"]))
        time.sleep(0.3)
        return "yes"

    return answer


@pytest.fixture
def gaps_platform(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A live server with a two-item project, and a contributor with a bound device."""
    settings = _settings(tmp_path, data_dir=tmp_path / "platform")
    running = start_platform(settings, worker_interval=0.5)
    server = ServerThread(running.app, port=free_port()).__enter__()
    try:
        live_project(server.url, {"name": "gaps", "label_schema": {"kind": "classes", "classes": ["yes", "no"]}}, 2)
        wallet, key = Account.create(), DeviceKey.generate()
        client = PlatformClient(server.url, wallet, timeout=10)
        client.sign_in()
        client.bind_device(key)
        yield client, key
    finally:
        server.__exit__(None, None, None)
        running.close()


@pytest.mark.parametrize(
    ("after", "seconds", "reason"),
    [
        (1.2, 1.2, "s are missing before chunk"),  # mid-epoch, after both markers
        (0.0, 1.5, "marker"),  # from the stimulus on: its marker (and the response's) lost with the data
    ],
)
def test_a_task_whose_eeg_the_device_lost_is_shown_again(  # type: ignore[no-untyped-def]
    tmp_path: Path, gaps_platform, after: float, seconds: float, reason: str
) -> None:
    """The device loses data during the first trial: the companion does not sign a sample the
    platform would refuse as not contiguous, nor wait for markers the lost data took with it —
    the task is shown and answered again after the gap, and the trial says why; the next task
    is shown once."""
    client, key = gaps_platform
    asked: list[int] = []
    answer = _answering(asked)

    source = Dropout(BrainFlowSource(BoardSpec.create("synthetic")), after=after, seconds=seconds)
    heard: list[str] = []
    with LabelingRun(client, source, key, tmp_path / "session", chain_id=1) as run:
        trials = []
        for _ in range(2):
            task = client.next_task()
            assert task is not None
            trials.append(run.trial(task, answer, on_repeat=lambda task, why: heard.append(why)))
    assert source.dropped > 0
    first, second = trials
    assert len(first.repeats) == 1 and reason in first.repeats[0], first.repeats
    assert heard == list(first.repeats)  # told before the task came back
    assert asked == [first.task["id"], first.task["id"], second.task["id"]]
    assert second.repeats == ()
    for trial in trials:  # signed and verified (the synthetic board is no head: liveness may refuse it)
        assert trial.verdict["sample_cid"], trial.verdict
        assert not any("not contiguous" in r for r in trial.verdict["reasons"]), trial.verdict
    gaps = [chunk["seq"] for _, chunk in iter_chunks(tmp_path / "session") if chunk.get("gap")]
    assert len(gaps) == 1, gaps  # the loss is declared in the session, once


def test_a_headset_that_keeps_losing_data_stops_the_run_saying_so(tmp_path: Path, gaps_platform) -> None:  # type: ignore[no-untyped-def]
    """The device loses data during every presentation: after three the run stops with an error
    that says what to check, and nothing was signed or submitted for the task."""
    client, key = gaps_platform
    asked: list[int] = []
    answer = _answering(asked)

    source = Dropout(BrainFlowSource(BoardSpec.create("synthetic")), after=1.2, seconds=1.2, every=True)
    with LabelingRun(client, source, key, tmp_path / "session", chain_id=1) as run:
        task = client.next_task()
        assert task is not None
        with pytest.raises(MindprintError, match=r"lost data during 3 presentations of task \d+ in a row .*headset"):
            run.trial(task, answer)
    assert asked == [task["id"]] * 3
    assert client.call("GET", "/rewards")["accepted_samples"] == 0
    lease = client.next_task()  # the lease is still the contributor's: the task can be labelled later
    assert lease is not None and lease["id"] == task["id"]


def _serve(home: Path, port: int, rpc_url: str) -> subprocess.Popen[bytes]:
    from .services import ANVIL_KEY

    env = {
        **os.environ,
        "MINDPRINT_HOME": str(home),
        "MINDPRINT_OPERATORS": OPERATOR.address.lower(),
        "MINDPRINT_OPERATOR_KEY": ANVIL_KEY,
    }
    command = [sys.executable, "-m", "mindprint.cli", "serve", "--port", str(port), "--rpc-url", rpc_url, "--deploy"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("serve did not start")


def test_sigkill_of_serve_during_a_burst_loses_no_accepted_sample(tmp_path: Path, anvil_url: str) -> None:
    port = free_port()
    server = _serve(tmp_path / "home", port, anvil_url)
    url = f"http://127.0.0.1:{port}"
    contributors = []
    try:
        from .test_scale import requester_project

        requester_project(url, items=8, redundancy=1)
        platform_key = None
        for n in range(8):  # eight contributors, eight distinct stretches of real EEG
            wallet, key = Account.create(), DeviceKey.generate()
            client = PlatformClient(url, wallet)
            client.sign_in()
            client.bind_device(key)
            platform_key = platform_key or bytes.fromhex(client.config()["platform_key"])
            task = client.next_task()
            assert task is not None
            session = real_session(tmp_path / f"s{n}", key, seconds=8, offset_seconds=10 + 8 * n)
            from mindprint.companion.stream import upload_recorded

            upload_recorded(client, session, platform_key)
            signed = build_sample(
                session, key, wallet, task=task["id"], label="yes", chain_id=client.config()["chain_id"],
                stimulus_ns=T0 + 2 * 10**9, response_ns=T0 + 2 * 10**9 + 5 * 10**8,
            )  # fmt: skip
            contributors.append((client, signed, f"burst-{n}"))

        def send(entry):  # type: ignore[no-untyped-def]
            client, signed, key = entry
            try:
                return client.submit(signed, key)
            except Exception as err:  # the kill cuts some requests off
                return err

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(send, entry) for entry in contributors]
            time.sleep(1.0)  # the burst is being verified
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=10)
            answers = [f.result() for f in futures]
        answered = {a["sample_cid"]: a for a in answers if isinstance(a, dict)}
        server = _serve(tmp_path / "home", port, anvil_url)
        # the cut-off ones are retried with the same Idempotency-Key and complete
        for (client, signed, key), answer in zip(contributors, answers, strict=True):
            if not isinstance(answer, dict):
                client.sign_in()
                retried = client.submit(signed, key)
                answered[retried["sample_cid"]] = retried
        assert len(answered) == 8
        accepted = [cid for cid, a in answered.items() if a["status"] == "accepted"]
        assert accepted
        deadline = time.monotonic() + 90
        proofs: dict[str, dict] = {}  # type: ignore[type-arg]
        admin_auth = {"Authorization": f"Bearer {admin_token(url)}"}
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.monotonic() < deadline and len(proofs) < len(accepted):
                for cid in set(accepted) - set(proofs):
                    answer = http.get(f"/samples/{cid}/proof", headers=admin_auth)
                    if answer.status_code == 200 and answer.json()["state"] == "confirmed":
                        proofs[cid] = answer.json()
                time.sleep(0.5)
        assert set(proofs) == set(accepted)
        # exactly once: each sample in one batch, and that batch's root is anchored
        from sqlalchemy import text

        from mindprint.labeling.store import make_engine

        engine = make_engine(f"sqlite:///{tmp_path / 'home' / 'platform.db'}")
        with engine.connect() as conn:
            for cid in accepted:
                count = conn.execute(text("SELECT COUNT(*) FROM anchor_members WHERE cid = :c"), {"c": cid}).scalar()
                assert count == 1
        engine.dispose()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def admin_token(url: str) -> str:
    client = PlatformClient(url, OPERATOR)
    client.sign_in()
    assert client.token is not None
    return client.token


def test_companion_and_verifier_import_no_server_stack() -> None:
    code = (
        "import sys, mindprint.companion.run, mindprint.companion.stream\n"
        "import mindprint.export.verify, mindprint.cli\n"
        "import mindprint.labeling.verification.model  # `mindprint check` scores liveness on the edge\n"
        "stack = {'sqlalchemy', 'fastapi', 'starlette', 'uvicorn', 'alembic'}\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & stack)\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported: {out.stdout}"


def test_old_format_sample_still_checks_against_its_session_car(tmp_path: Path) -> None:
    """Samples submitted before streaming carried the whole session: they still check offline."""
    from mindprint.labeling.samples import check_sample

    key, wallet = DeviceKey.generate(), Account.create()
    session = real_session(tmp_path / "s", key, seconds=12)
    signed = build_sample(
        session, key, wallet, task=3, label="yes", stimulus_ns=T0 + 5 * 10**9, response_ns=T0 + 6 * 10**9
    )
    check = check_sample(signed, (session / SESSION_FILE).read_bytes(), contributor=wallet.address, chain_id=1)
    assert check.problems == [] and check.report.ok
    tampered = replace(signed, device_signature=bytes(64))
    assert "device signature" in " ".join(
        check_sample(tampered, (session / SESSION_FILE).read_bytes(), contributor=wallet.address, chain_id=1).problems
    )
