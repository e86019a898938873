"""Federated training: secure aggregation, DP accounting, rounds over a real server, checked inference."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from pathlib import Path

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


def test_round_with_a_dropout_over_a_real_server(tmp_path: Path, windows: LabeledWindows) -> None:
    settings = _settings(tmp_path, data_dir=tmp_path / "platform")
    running = start_platform(settings, worker_interval=0.2)
    try:
        with ServerThread(running.app) as server:
            operator = {"Authorization": f"Bearer {_token(httpx.Client(base_url=server.url), OPERATOR)}"}
            seen: list[tuple[str, bytes]] = []
            shares = [windows.subset(np.arange(i, len(windows), 5)) for i in range(5)]
            clients = [_client(server.url, s, tmp_path, f"c{i}", seen, 100 * i) for i, s in enumerate(shares)]
            answer = httpx.post(
                f"{server.url}/federated/rounds",
                json={"min_clients": 5, "max_clients": 5, "phase_seconds": 8, "noise_multiplier": 3.0},
                headers=operator,
            )
            assert answer.status_code == 201, answer.text
            round_id = answer.json()["id"]
            start = decode_model(
                base64.b64decode(
                    clients[0].platform.call("GET", f"/federated/models/{answer.json()['model_cid']}")["block"]
                )
            )
            # another round cannot open while this one runs
            assert httpx.post(f"{server.url}/federated/rounds", json={}, headers=operator).status_code == 409

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
            record = decode_block(running.platform.blockstore.get(state["record_cid"]))
            assert record["contributors"] == state["members"]["u3"] and record["model"] == state["result_cid"]
            deadline = time.monotonic() + 30
            while running.platform.anchorer is not None and time.monotonic() < deadline:
                try:
                    proof = running.platform.anchorer.proof(state["record_cid"])
                    assert running.platform.anchorer.verify_on_chain(proof)
                    break
                except Exception:
                    time.sleep(0.3)
            else:
                pytest.fail("the round record was not anchored")
            # privacy spent is kept on the device; past the budget a client refuses the next round
            assert 0 < clients[0].ledger.epsilon(1e-5) < 8
            assert PrivacyLedger.load(tmp_path / "c0.json").history == clients[0].ledger.history
            nxt = httpx.post(
                f"{server.url}/federated/rounds", json={"min_clients": 2, "epsilon_budget": 0.5}, headers=operator
            )
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
            rewards = httpx.post(f"{server.url}/rewards/epochs", headers=operator)
            assert rewards.status_code == 201, rewards.text
            assert rewards.json()["contributors"] >= 4
    finally:
        running.close()


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
