"""Federated training: secure aggregation, DP accounting, rounds over a real server, checked inference."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from eth_account import Account

from mindprint.api.server import ServerThread, start_platform
from mindprint.companion.client import PlatformClient
from mindprint.companion.samples import build_sample
from mindprint.core.errors import InvalidRequest
from mindprint.core.ipld import cid_for_block, decode_block, encode_block
from mindprint.device.bridge import DataChunk
from mindprint.device.keys import DeviceKey
from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.device.session import SESSION_FILE, SessionWriter
from mindprint.federated.client import FederatedClient, FederatedError
from mindprint.federated.data import CYTON_CHANNELS, LabeledWindows, cyton_eyes_closed
from mindprint.federated.inference import ModelCache
from mindprint.federated.model import decode_model, encode_model, flat_parameters, new_model
from mindprint.federated.secagg import SecAggClient, combine_shares, encode_vector, split_secret, unmask_sum
from mindprint.federated.training import PrivacyLedger, TrainParams, train_private
from mindprint.labeling.samples import check_sample
from mindprint.protocol.formats import SignedSample, sample_typed_data

from .conftest import CYTON_CSV, require
from .test_api import OPERATOR, _settings
from .test_end_to_end import _token


@pytest.fixture(scope="module")
def windows() -> LabeledWindows:
    return cyton_eyes_closed(require(CYTON_CSV))


@dataclass
class Served:
    running: Any
    url: str
    http: httpx.Client
    operator: dict[str, str]  # the operator's Authorization header


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The platform (embedded chain, worker thread) behind a real uvicorn server on 127.0.0.1."""
    running = start_platform(_settings(tmp_path, data_dir=tmp_path / "platform"), worker_interval=0.2)
    try:
        with ServerThread(running.app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
            yield Served(running, server.url, http, {"Authorization": f"Bearer {_token(http, OPERATOR)}"})
    finally:
        running.close()


# -- secure aggregation, as pure functions ----------------------------------------------------------


def _protocol(n: int, t: int, drop_after_shares: int = 0, drop_after_masked: int = 0, length: int = 40):  # type: ignore[no-untyped-def]
    ids = sorted(f"0x{i:040x}" for i in range(1, n + 1))
    clients = {i: SecAggClient(i, "7") for i in ids}
    keys = {i: c.advertise() for i, c in clients.items()}
    shares = {i: c.share(keys, t) for i, c in clients.items()}
    u2 = ids
    u3 = ids[: n - drop_after_shares]
    x = {i: np.random.default_rng(k).normal(0, 0.1, size=length) for k, i in enumerate(ids)}
    masked = {i: clients[i].masked_input(x[i], {v: shares[v][i] for v in u2 if v != i}) for i in u3}
    answering = u3[: len(u3) - drop_after_masked]
    reveals = {w: clients[w].unmask(u2, u3) for w in answering}
    flat_keys = {i: (k["c_pk"], k["s_pk"]) for i, k in keys.items()}
    return ids, x, masked, reveals, flat_keys, u2, u3


@pytest.mark.parametrize(("drop_shares", "drop_masked"), [(0, 0), (2, 0), (0, 2), (2, 1)])
def test_secure_sum_is_exact_with_dropouts(drop_shares: int, drop_masked: int) -> None:
    _, x, masked, reveals, keys, u2, u3 = _protocol(7, 4, drop_shares, drop_masked)
    total = unmask_sum("7", keys, u2, masked, reveals, 4, 40)
    expected = sum(x[i] for i in u3)
    assert np.abs(total - expected).max() < 1e-4  # fixed point: 2^-16 per client


def test_one_masked_update_reveals_nothing_and_too_few_shares_fail() -> None:
    ids, x, masked, reveals, keys, u2, _ = _protocol(5, 3)
    one = masked[ids[0]].astype(np.float64)
    # the masked words are uniform over 2^32, whatever the update (mean 2^31, no trace of x)
    assert abs(one.mean() / 2**31 - 1) < 0.5
    assert np.abs(np.corrcoef(one, x[ids[0]])[0, 1]) < 0.5
    assert not np.array_equal(masked[ids[0]], encode_vector(x[ids[0]]))
    with pytest.raises(InvalidRequest, match=r"threshold|too few"):
        unmask_sum("7", keys, u2, masked, dict(list(reveals.items())[:2]), 3, 40)
    secret = bytes(range(32))
    shares = split_secret(secret, 5, 3)
    assert combine_shares(shares[1:4]) == secret
    # two shares of a 3-of-5 split combine to another number (or none), never the secret
    with contextlib.suppress(InvalidRequest):
        assert combine_shares(shares[:2]) != secret


# -- differential privacy ------------------------------------------------------------------------


def test_dp_training_accounts_and_refuses_past_the_budget(windows: LabeledWindows) -> None:
    params = TrainParams(local_epochs=1, batch_size=8, lr=0.5, clip=1.0, noise_multiplier=3.0)
    model = new_model()
    share = windows.subset(np.arange(0, len(windows), 10))
    update, step = train_private(model, share.x, share.y, params, seed=1)
    assert update.shape == flat_parameters(model).shape and np.all(np.isfinite(update))
    assert step[0] == 3.0 and step[2] >= 1
    ledger = PrivacyLedger(None, [step] * 20)
    assert 0 < ledger.epsilon(1e-5) < 8
    ledger.history *= 10
    assert ledger.epsilon(1e-5) > 8


# -- rounds over a real uvicorn server -----------------------------------------------------------


def _client(
    url: str, share: LabeledWindows, tmp: Path, name: str, seen: list[tuple[str, bytes]], seed: int
) -> FederatedClient:
    def record(request: httpx.Request) -> None:
        seen.append((request.url.path, request.content))

    http = httpx.Client(base_url=url, timeout=60, event_hooks={"request": [record]})
    platform = PlatformClient(url, Account.create(), http=http)
    platform.sign_in()
    return FederatedClient(platform, share, PrivacyLedger(tmp / f"{name}.json"), poll=0.05, seed=seed)


def test_round_with_a_dropout_over_a_real_server(tmp_path: Path, served: Served, windows: LabeledWindows) -> None:
    operator = served.operator
    seen: list[tuple[str, bytes]] = []
    shares = [windows.subset(np.arange(i, len(windows), 5)) for i in range(5)]
    clients = [_client(served.url, s, tmp_path, f"c{i}", seen, 100 * i) for i, s in enumerate(shares)]
    answer = httpx.post(
        f"{served.url}/federated/rounds",
        json={"min_clients": 5, "max_clients": 5, "phase_seconds": 8, "noise_multiplier": 3.0},
        headers=operator,
    )
    assert answer.status_code == 201, answer.text
    round_id = answer.json()["id"]
    start = decode_model(
        base64.b64decode(clients[0].platform.call("GET", f"/federated/models/{answer.json()['model_cid']}")["block"])
    )
    # another round cannot open while this one runs
    assert httpx.post(f"{served.url}/federated/rounds", json={}, headers=operator).status_code == 409

    import threading

    outcomes: list[object] = [None] * 5
    updates: dict[int, np.ndarray] = {}
    real_train = train_private

    def run(i: int) -> None:
        outcomes[i] = clients[i].join(round_id, stop_after="shares" if i == 4 else None)

    # record each client's true update to compare with what the platform computes from the sum
    import mindprint.federated.client as module

    def spy(model, x, y, params, *, seed=0):  # type: ignore[no-untyped-def]
        update, step = real_train(model, x, y, params, seed=seed)
        updates[seed] = update
        return update, step

    module.train_private = spy  # type: ignore[assignment]
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        module.train_private = real_train  # type: ignore[assignment]
    phases = [getattr(o, "phase", None) for o in outcomes]
    assert phases[:4] == ["done"] * 4 and phases[4] == "dropped", phases
    state = clients[0].platform.call("GET", f"/federated/rounds/{round_id}")
    assert len(state["members"]["u2"]) == 5 and len(state["members"]["u3"]) == 4
    # the new model is the start plus the mean of the four survivors' updates, recovered from the sum only
    result = decode_model(
        base64.b64decode(clients[0].platform.call("GET", f"/federated/models/{state['result_cid']}")["block"])
    )
    survivors = [updates[100 * i + round_id] for i in range(4)]
    moved = flat_parameters(result) - flat_parameters(start)
    assert np.abs(moved - np.mean(survivors, axis=0)).max() < 1e-4
    assert np.abs(moved).max() > 1e-3
    # what left each client: keys, encrypted shares, a masked vector, unmasking shares — no EEG, no update
    eeg = {w.astype("<f4").tobytes()[:64] for w in windows.x[:20]}
    for path, body in seen:
        assert not any(chunk in body for chunk in eeg)
        if path.endswith("/masked"):
            vector = np.frombuffer(bytes.fromhex(json.loads(body)["vector"]), dtype="<u4")
            for update in updates.values():
                assert not np.array_equal(vector, encode_vector(update))
        if path.startswith("/federated/rounds/") and body:
            assert set(json.loads(body)) <= {"c_pk", "s_pk", "shares", "vector", "reveals"}
    # the round record is pinned and anchored on chain with its contributors
    record = decode_block(served.running.platform.blockstore.get(state["record_cid"]))
    assert record["contributors"] == state["members"]["u3"] and record["model"] == state["result_cid"]
    deadline = time.monotonic() + 30
    while served.running.platform.anchorer is not None and time.monotonic() < deadline:
        try:
            proof = served.running.platform.anchorer.proof(state["record_cid"])
            assert served.running.platform.anchorer.verify_on_chain(proof)
            break
        except Exception:
            time.sleep(0.3)
    else:
        pytest.fail("the round record was not anchored")
    from sqlalchemy import select

    from mindprint.labeling.store import Job, sessions

    assert served.running.platform.engine is not None
    deadline = time.monotonic() + 30
    while True:  # the worker pins on one of its next iterations
        with sessions(served.running.platform.engine)() as db:
            jobs = db.execute(select(Job.ref, Job.state, Job.last_error).where(Job.kind == "pin")).all()
        pins = {ref: (job_state, error) for ref, job_state, error in jobs}
        done = [pins.get(state[name], ("missing", None))[0] == "done" for name in ("result_cid", "record_cid")]
        if all(done) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert all(done), pins
    assert {str(c) for c in served.running.platform.blockstore.pins()} >= {state["result_cid"], state["record_cid"]}
    # privacy spent is kept on the device; past the budget a client refuses the next round
    assert 0 < clients[0].ledger.epsilon(1e-5) < 8
    assert PrivacyLedger.load(tmp_path / "c0.json").history == clients[0].ledger.history
    nxt = httpx.post(f"{served.url}/federated/rounds", json={"min_clients": 2, "epsilon_budget": 0.5}, headers=operator)
    assert nxt.status_code == 201, nxt.text
    with pytest.raises(FederatedError, match="over the budget"):
        clients[0].join(nxt.json()["id"])
    clients[1].ledger.opted_out = True
    with pytest.raises(FederatedError, match="opted out"):
        clients[1].join(nxt.json()["id"])
    # bad messages get clean 4xx
    c2 = clients[2].platform
    for body in ({"c_pk": "zz", "s_pk": "00"}, {"c_pk": "00" * 31, "s_pk": "00" * 32}, {}):
        with pytest.raises(Exception, match="422"):
            c2.call("POST", f"/federated/rounds/{nxt.json()['id']}/keys", json=body)
    with pytest.raises(Exception, match="409"):
        c2.call("POST", f"/federated/rounds/{nxt.json()['id']}/masked", json={"vector": "00"})
    with pytest.raises(Exception, match="404"):
        c2.call("GET", "/federated/models/bafyreiaaaa")
    # contributors are rewarded in the next epoch
    rewards = httpx.post(f"{served.url}/rewards/epochs", headers=operator)
    assert rewards.status_code == 201, rewards.text
    assert rewards.json()["contributors"] >= 4


# -- on-device inference the platform re-executes --------------------------------------------------


def test_tampered_on_device_inference_is_rejected(tmp_path: Path) -> None:
    recording = read_openbci_gui_csv(require(CYTON_CSV))
    eeg = recording.data[1:9, 250 * 30 : 250 * 40] * 1e-6
    key, wallet = DeviceKey.generate(), Account.create()
    session = tmp_path / "session"
    with SessionWriter.create(
        session,
        key,
        board_id=0,
        board_name="Cyton",
        sfreq=250.0,
        channels=CYTON_CHANNELS,
        types=("eeg",) * 8,
        units=("V",) * 8,
        chunk_seconds=0.5,
        fsync=False,
    ) as writer:
        t0 = 1_700_000_000_000_000_000
        for i in range(0, eeg.shape[1], 125):
            markers = ((0, 1, "stimulus"),) if i == 500 else ()
            writer.append(DataChunk(t0_ns=t0 + i * 4_000_000, samples=eeg[:, i : i + 125], markers=markers, gap=None))
    model = new_model(seed=3)
    block, cid = encode_model(model)
    models = ModelCache(lambda c: block if c == str(cid) else b"")
    stimulus = t0 + 500 * 4_000_000
    signed = build_sample(
        session,
        key,
        wallet,
        task=1,
        label="eyes_closed",
        stimulus_ns=stimulus,
        response_ns=stimulus + 10**9,
        model=(str(cid), model),
    )
    value = signed.value
    assert value["inference"]["model"] == str(cid) and len(value["inference"]["output"]) == 2
    car = (session / SESSION_FILE).read_bytes()
    honest = check_sample(signed, car, contributor=wallet.address, chain_id=1, models=models)
    assert honest.problems == []

    def resign(changed: dict) -> SignedSample:  # the attacker holds the device key and the wallet
        new_block = encode_block(changed)
        new_cid = cid_for_block(new_block)
        from eth_account import Account as A

        typed = sample_typed_data(new_cid, changed["task"], changed["label"], 1)
        wallet_sig = bytes(A.sign_typed_data(wallet.key, full_message=typed).signature)
        return SignedSample(new_block, new_cid, key.sign(bytes(new_cid)), wallet_sig)

    flipped = dict(value, inference={"model": str(cid), "output": list(reversed(value["inference"]["output"]))})
    bad = check_sample(resign(flipped), car, contributor=wallet.address, chain_id=1, models=models)
    assert any("differs from re-execution" in p for p in bad.problems), bad.problems
    other = dict(value, inference={"model": "bafyreib" + "a" * 51, "output": value["inference"]["output"]})
    unknown = check_sample(resign(other), car, contributor=wallet.address, chain_id=1, models=models)
    assert any("cannot be re-executed" in p for p in unknown.problems)


# -- the companion: inference signed with every sample, epochs kept for training, the CLI --------


def test_labeling_run_signs_inference_and_keeps_epochs(tmp_path: Path, served: Served) -> None:
    from mindprint.companion.run import LabelingRun
    from mindprint.device.boards import BoardSpec
    from mindprint.device.bridge import BrainFlowSource
    from mindprint.device.openbci import import_recording
    from mindprint.federated.local import LocalEpochs
    from mindprint.federated.model import ModelSpec

    operator = served.operator
    http = served.http
    project = http.post(
        "/projects",
        json={"name": "eyes", "label_schema": {"kind": "classes", "classes": ["eyes_open", "eyes_closed"]}},
        headers=operator,
    ).json()
    items = {"items": [{"content": {"text": f"Close your eyes ({i})"}} for i in range(3)]}
    assert http.post(f"/projects/{project['id']}/items", json=items, headers=operator).status_code == 201
    wallet, key = Account.create(), DeviceKey.generate()
    client = PlatformClient(served.url, wallet)
    client.sign_in()
    client.bind_device(key)
    cid = client.call("GET", "/federated/models")["cid"]
    model = decode_model(base64.b64decode(client.call("GET", f"/federated/models/{cid}")["block"]))
    playback = tmp_path / "cyton.csv"
    import_recording(require(CYTON_CSV), playback, start_seconds=30, seconds=24)
    source = BrainFlowSource(BoardSpec.create("playback", file=str(playback), master_board="cyton"))
    keep = LocalEpochs(tmp_path / "federated")
    run = LabelingRun(
        client,
        source,
        key,
        tmp_path / "session",
        chain_id=client.config()["chain_id"],
        model=(cid, model),
        keep=keep,
    )
    with run:
        task = client.next_task()
        assert task is not None
        trial = run.trial(task, lambda t: (time.sleep(0.5), "eyes_closed")[1])
        # a companion that runs other weights (or edits the output) but names the published
        # model's CID signs an output the platform's re-execution does not reproduce
        run.model = (cid, new_model(seed=5))
        task = client.next_task()
        assert task is not None
        forged = run.trial(task, lambda t: (time.sleep(0.5), "eyes_closed")[1])
    assert trial.verdict["status"] == "accepted", trial.verdict
    assert forged.verdict["status"] == "rejected", forged.verdict
    assert any("differs from re-execution" in r for r in forged.verdict["reasons"]), forged.verdict
    sample = http.get(f"/samples/{trial.verdict['sample_cid']}", headers=operator).json()
    assert sample["status"] == "accepted"
    assert len(keep) == 1
    windows = keep.windows(ModelSpec())
    assert len(windows) == 4 and set(windows.y.tolist()) == {1}
    assert keep.windows(ModelSpec(classes=("a", "b"))).x.shape[0] == 0


def test_cli_round_join_privacy(tmp_path: Path, served: Served, windows: LabeledWindows) -> None:
    import os
    import subprocess
    import sys

    from mindprint.federated.local import LocalEpochs

    operator_key = tmp_path / "operator.key"
    operator_key.write_text(OPERATOR.key.hex())
    operator_key.chmod(0o600)
    homes = []
    for i in range(2):
        home = tmp_path / f"home{i}"
        local = LocalEpochs(home / "federated")
        for j in range(i, len(windows), 6):  # the windows stand in for kept epochs (1 s each)
            label = ("eyes_open", "eyes_closed")[int(windows.y[j])]
            local.add(label, windows.x[j].astype(np.float64) * 20e-6, CYTON_CHANNELS, 250.0)
        homes.append(home)

    def cli(home: Path, *args: str, key: str | None = None) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "MINDPRINT_HOME": str(home),
            "MINDPRINT_WALLET_KEY": key or Account.create().key.hex(),
        }
        return subprocess.Popen(
            [sys.executable, "-m", "mindprint.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    open_round = ["federated", "round", "--api", served.url, "--wallet-key-file", str(operator_key)]
    opened = cli(tmp_path, *open_round, "--min-clients", "2", "--max-clients", "2", "--phase-seconds", "30")
    out, _ = opened.communicate(timeout=120)
    assert opened.returncode == 0 and "round 1 open" in out, out
    joins = [cli(home, "federated", "join", "--api", served.url) for home in homes]
    for join in joins:
        out, _ = join.communicate(timeout=300)
        assert join.returncode == 0, out
        assert "round 1: done" in out and "ε = " in out, out
    shown = cli(homes[0], "federated", "privacy", "--opt-out")
    out, _ = shown.communicate(timeout=120)
    assert shown.returncode == 0 and "opted out" in out and "over 1 rounds" in out, out
    again = cli(tmp_path, *open_round, "--min-clients", "2")
    again.communicate(timeout=120)
    refused = cli(homes[0], "federated", "join", "--api", served.url)
    out, _ = refused.communicate(timeout=120)
    assert refused.returncode != 0 and "opted out" in out and "Traceback" not in out, out


# -- bad input at every step gets a clean 4xx and loses nothing accepted ---------------------------


def test_bad_round_messages_are_refused_and_the_round_still_completes(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from mindprint.api.app import create_app

    from .test_api import _auth, sign_in

    app = create_app()
    settings = _settings(tmp_path, data_dir=tmp_path / "platform")
    app.state.settings = settings
    with TestClient(app, raise_server_exceptions=False) as client:
        operator = _auth(sign_in(client, OPERATOR))
        assert client.get("/federated/rounds/latest", headers=operator).status_code == 404
        assert client.post("/federated/rounds", json={"min_clients": 1}, headers=operator).status_code == 422
        assert (
            client.post("/federated/rounds", json={"model_cid": "bafyreib" + "a" * 51}, headers=operator).status_code
            == 404
        )
        wallets = [Account.create() for _ in range(3)]
        tokens = {w.address: _auth(sign_in(client, w)) for w in wallets}
        outsider = _auth(sign_in(client, Account.create()))
        answer = client.post("/federated/rounds", json={"min_clients": 3, "max_clients": 3}, headers=operator)
        assert answer.status_code == 201, answer.text
        rid = answer.json()["id"]
        base = f"/federated/rounds/{rid}"
        assert client.get("/federated/rounds/99", headers=operator).status_code == 404
        assert client.post(f"{base}/nonsense", json={}, headers=operator).status_code == 422
        secagg = {w.address: SecAggClient(w.address, str(rid)) for w in wallets}

        def send(address: str, step: str, body: dict[str, Any]) -> httpx.Response:
            return client.post(f"{base}/{step}", json=body, headers=tokens[address])  # type: ignore[return-value]

        for address, c in secagg.items():
            keys = c.advertise()
            body = {"c_pk": keys["c_pk"].hex(), "s_pk": keys["s_pk"].hex()}
            assert send(address, "masked", {"vector": "00"}).status_code == 409  # not that step yet
            assert send(address, "keys", {"c_pk": "00", "s_pk": body["s_pk"]}).status_code == 422
            assert send(address, "keys", body).status_code == 200
            again = send(address, "keys", body)  # the same again: idempotent while the step is open
            if address != wallets[-1].address:
                assert again.status_code == 200 and again.json()["stored"] is False
            else:  # the third client filled the round: the step is over
                assert again.status_code == 409
        state = client.get(base, headers=tokens[wallets[0].address]).json()
        assert state["phase"] == "shares" and len(state["members"]["u1"]) == 3
        assert client.post(f"{base}/shares", json={"shares": {}}, headers=outsider).status_code == 403
        keys = {
            v: {"c_pk": bytes.fromhex(k["c_pk"]), "s_pk": bytes.fromhex(k["s_pk"])} for v, k in state["keys"].items()
        }
        for address, c in secagg.items():
            shares = {v: s.hex() for v, s in c.share(keys, state["threshold"]).items()}
            one = dict(list(shares.items())[:1])
            assert send(address, "shares", {"shares": one}).status_code == 422  # one recipient missing
            wrong = {v: "ab" * 10 for v in shares}
            assert send(address, "shares", {"shares": wrong}).status_code == 422  # not a share ciphertext
            assert send(address, "shares", {"shares": shares}).status_code == 200
        length = len(flat_parameters(new_model()))
        for address, c in secagg.items():
            state = client.get(base, headers=tokens[address]).json()
            assert state["phase"] == "masked"
            vector = c.masked_input(np.zeros(length), {v: bytes.fromhex(x) for v, x in state["inbox"].items()})
            assert send(address, "masked", {"vector": "00" * 8}).status_code == 422  # wrong length
            assert send(address, "masked", {"vector": "zz"}).status_code == 422
            good = np.asarray(vector, dtype="<u4").tobytes().hex()
            assert send(address, "masked", {"vector": good}).status_code == 200
            if address != wallets[-1].address:
                other = (np.asarray(vector, dtype="<u4") + 1).tobytes().hex()
                assert send(address, "masked", {"vector": other}).status_code == 409  # a different second input
        state = client.get(base, headers=operator).json()
        assert state["phase"] == "unmask"
        u2, u3 = state["members"]["u2"], state["members"]["u3"]
        for address, c in secagg.items():
            reveals = {v: [kind, share.hex()] for v, (kind, share) in c.unmask(u2, u3).items()}
            flipped = {v: ["s" if k == "b" else "b", s] for v, (k, s) in reveals.items()}
            assert send(address, "unmask", {"reveals": flipped}).status_code == 422  # would reveal a survivor's key
            assert send(address, "unmask", {"reveals": {"0x" + "11" * 20: ["b", "00" * 70]}}).status_code == 422
            assert send(address, "unmask", {"reveals": reveals}).status_code == 200
        final = client.get(base, headers=operator).json()
        assert final["phase"] == "done" and final["result_cid"], final
        # every update was zero: the model is unchanged, to the fixed-point step
        start = decode_model(
            base64.b64decode(client.get(f"/federated/models/{final['model_cid']}", headers=operator).json()["block"])
        )
        result = decode_model(
            base64.b64decode(client.get(f"/federated/models/{final['result_cid']}", headers=operator).json()["block"])
        )
        assert np.abs(flat_parameters(result) - flat_parameters(start)).max() < 1e-4
