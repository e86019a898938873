"""The whole flow on embedded defaults: a real uvicorn server with its worker, a requester,
a contributor labeling with replayed real EEG, verification, anchoring, proofs — and a
synthetic-board contributor who is rejected."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

from mindprint.api.server import ServerThread, start_platform
from mindprint.companion.client import PlatformClient
from mindprint.companion.run import LabelingRun
from mindprint.device.boards import BoardSpec
from mindprint.device.bridge import BrainFlowSource
from mindprint.device.keys import DeviceKey
from mindprint.device.openbci import import_recording

from .conftest import CYTON_CSV, require
from .test_api import OPERATOR, REQUESTER, _settings


def _token(http: httpx.Client, account) -> str:  # type: ignore[no-untyped-def]
    issued = http.post("/auth/nonce", json={"address": account.address}).json()
    signature = account.sign_message(encode_defunct(text=issued["message"])).signature.to_0x_hex()
    return str(
        http.post("/auth/verify", json={"message": issued["message"], "signature": signature}).json()["access_token"]
    )


def test_label_verify_anchor_prove(tmp_path: Path) -> None:
    settings = _settings(tmp_path, data_dir=tmp_path / "platform")
    running = start_platform(settings, worker_interval=0.2)
    try:
        with ServerThread(running.app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
            operator = {"Authorization": f"Bearer {_token(http, OPERATOR)}"}
            assert (
                http.put(
                    f"/accounts/{REQUESTER.address}/role", json={"role": "requester"}, headers=operator
                ).status_code
                == 200
            )
            requester = {"Authorization": f"Bearer {_token(http, REQUESTER)}"}
            project = http.post(
                "/projects",
                json={
                    "name": "squares",
                    "label_schema": {"kind": "classes", "classes": ["square", "other"]},
                    "redundancy": 1,
                },
                headers=requester,
            ).json()
            items = {"items": [{"content": {"text": f"Item {i}: is it a square?"}} for i in range(3)]}
            assert http.post(f"/projects/{project['id']}/items", json=items, headers=requester).status_code == 201

            wallet, key = Account.create(), DeviceKey.generate()
            client = PlatformClient(server.url, wallet)
            client.sign_in()
            client.bind_device(key)
            playback = tmp_path / "cyton.csv"
            import_recording(require(CYTON_CSV), playback, start_seconds=28, seconds=40)
            source = BrainFlowSource(BoardSpec.create("playback", file=str(playback), master_board="cyton"))
            accepted = []
            with LabelingRun(client, source, key, tmp_path / "session", chain_id=client.config()["chain_id"]) as run:
                for _ in range(2):
                    task = client.next_task()
                    assert task is not None
                    trial = run.trial(task, lambda t: (time.sleep(0.6), "square")[1])
                    assert trial.verdict["status"] == "accepted", trial.verdict
                    accepted.append(trial.verdict["sample_cid"])
            deadline = time.monotonic() + 30
            proof = None
            while time.monotonic() < deadline:
                try:
                    proof = client.proof(accepted[0])
                    break
                except Exception:
                    time.sleep(0.3)
            assert proof is not None and proof["state"] == "confirmed" and proof["verified_offline"]
            assert running.platform.anchorer is not None
            from mindprint.ledger.anchoring import InclusionProof

            assert running.platform.anchorer.verify_on_chain(
                InclusionProof(
                    **{
                        k: proof[k]
                        for k in (
                            "sample",
                            "root",
                            "proof",
                            "manifest",
                            "tx_hash",
                            "block",
                            "chain_id",
                            "registry",
                            "state",
                        )
                    }
                )
            )
            consensus = http.get(f"/projects/{project['id']}/consensus", headers=requester).json()
            assert {c["label"] for c in consensus} == {"square"}

            # a contributor streaming BrainFlow's synthetic board is refused as not human
            bot, bot_key = Account.create(), DeviceKey.generate()
            bot_client = PlatformClient(server.url, bot)
            bot_client.sign_in()
            bot_client.bind_device(bot_key)
            with LabelingRun(
                bot_client,
                BrainFlowSource(BoardSpec.create("synthetic")),
                bot_key,
                tmp_path / "bot",
                chain_id=client.config()["chain_id"],
            ) as run:
                task = bot_client.next_task()
                assert task is not None
                trial = run.trial(task, lambda t: "other")
            assert trial.verdict["status"] == "rejected"
            assert any("human range" in reason for reason in trial.verdict["reasons"])
    finally:
        running.close()
