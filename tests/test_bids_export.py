"""Researcher export: BIDS-EEG through mne-bids, the official validator, determinism,
consent, crypto-shredding, and `verify` catching one changed byte in any file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mne_bids
import pandas as pd
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient

from mindprint.api.server import RunningPlatform, start_platform
from mindprint.companion.samples import build_sample
from mindprint.device.keys import DeviceKey
from mindprint.export.bids import DIGESTS, FEATURES, ExportError, export_dataset, iter_files, platform_source
from mindprint.export.verify import verify_dataset
from mindprint.ledger.crypto import RecipientKey, unwrap_key, wrap_key
from mindprint.platform.service import engine_for

from .test_api import OPERATOR, REQUESTER, _auth, sign_in
from .test_api import _settings as api_settings
from .test_api_submissions import _submit
from .test_samples import T0, real_session

VALIDATOR = Path(sys.executable).parent / "bids-validator-deno"


@dataclass
class Exported:
    running: RunningPlatform
    client: TestClient
    tmp: Path
    project: int
    consenting: list[str]  # sample CIDs of the consenting contributor
    refused: list[str]  # of the contributor who never consented

    def source(self, recipient: RecipientKey | None = None):  # type: ignore[no-untyped-def]
        platform = self.running.platform
        settings = api_settings(self.tmp, data_dir=self.tmp / "platform")
        return platform_source(
            engine_for(settings),
            settings.platform_dir,
            platform.blockstore,
            platform.keys,
            recipient or platform.platform_key,
            deployment=self.running.deployment,
        )


def consent(client: TestClient, token: str, wallet, granted: bool = True) -> None:  # type: ignore[no-untyped-def]
    message = client.get("/consent", params={"granted": granted}, headers=_auth(token)).json()["message"]
    signature = wallet.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
    response = client.post("/consent", json={"message": message, "signature": signature}, headers=_auth(token))
    assert response.status_code == 200, response.text
    assert response.json()["consent"] is granted


def _contribute(
    client: TestClient, tmp: Path, name: str, stimuli: list[int], offset: int
) -> tuple[str, object, list[str]]:
    wallet, key = Account.create(), DeviceKey.generate()
    token = sign_in(client, wallet)
    from mindprint.protocol.formats import device_typed_data

    deadline = int(time.time()) + 600
    config = client.get("/config").json()
    typed = device_typed_data(key.public_key, wallet.address, deadline, config["chain_id"], config["device_registry"])
    signature = Account.sign_typed_data(wallet.key, full_message=typed).signature.to_0x_hex()
    bound = client.post(
        "/devices", json={"device": key.device_id, "deadline": deadline, "signature": signature}, headers=_auth(token)
    )
    assert bound.status_code == 201, bound.text
    session = real_session(tmp / name, key, seconds=20, offset_seconds=offset, tail=125)  # EDF pads the last record
    cids = []
    for n, second in enumerate(stimuli):
        task = client.get("/tasks/next", headers=_auth(token)).json()
        signed = build_sample(
            session,
            key,
            wallet,
            task=task["id"],
            label=["square", "other"][n % 2],
            chain_id=config["chain_id"],
            stimulus_ns=T0 + second * 1_000_000_000,
            response_ns=T0 + second * 1_000_000_000 + 640_000_000,
        )
        verdict = _submit(client, signed, session, _auth(token)).json()
        assert verdict["status"] == "accepted", verdict
        cids.append(verdict["sample_cid"])
    return token, wallet, cids


def _squares_project(client: TestClient) -> int:
    operator = sign_in(client, OPERATOR)
    client.put(f"/accounts/{REQUESTER.address}/role", json={"role": "requester"}, headers=_auth(operator))
    requester = sign_in(client, REQUESTER)
    schema = {"kind": "classes", "classes": ["square", "other"]}
    project = client.post(
        "/projects", json={"name": "squares", "label_schema": schema, "redundancy": 2}, headers=_auth(requester)
    ).json()
    items = {"items": [{"content": {"text": f"item {i}"}} for i in range(3)]}
    assert client.post(f"/projects/{project['id']}/items", json=items, headers=_auth(requester)).status_code == 201
    return int(project["id"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    tmp = tmp_path_factory.mktemp("export")
    settings = api_settings(tmp, data_dir=tmp / "platform")
    running = start_platform(settings, worker_interval=3600)  # the test drives the worker
    try:
        with TestClient(running.app) as client:
            project = _squares_project(client)
            token, wallet, consenting = _contribute(client, tmp, "alice", [4, 11, 16], offset=30)
            consent(client, token, wallet)
            other_token, other_wallet, refused = _contribute(client, tmp, "bob", [5], offset=60)
            consent(client, other_token, other_wallet, granted=True)
            consent(client, other_token, other_wallet, granted=False)  # withdrawn
            running.worker.run_once()  # pin + anchor (one batch)
            yield Exported(running, client, tmp, project, consenting, refused)
    finally:
        running.close()


def _dataset_a(exported: Exported) -> Path:
    """The first test's export (made here when a test runs on its own)."""
    out = exported.tmp / "ds-a"
    if not out.exists():
        export_dataset(exported.source(), out, projects=[exported.project])
    return out


def _validate(root: Path) -> dict:  # type: ignore[type-arg]
    result = subprocess.run(
        [str(VALIDATOR), "--format", "json", str(root)], capture_output=True, text=True, timeout=300, check=False
    )
    return json.loads(result.stdout)


def test_export_is_valid_bids_deterministic_and_verifies(exported: Exported) -> None:
    out_a, out_b = exported.tmp / "ds-a", exported.tmp / "ds-b"
    shutil.rmtree(out_a, ignore_errors=True)  # another test may have made it first
    summary = export_dataset(exported.source(), out_a, projects=[exported.project])
    assert summary.samples == 3 and summary.recordings == 1 and summary.participants == 1
    assert summary.skipped == {"contributor has not consented": 1}
    export_dataset(exported.source(), out_b, projects=[exported.project])
    files_a, files_b = list(iter_files(out_a)), list(iter_files(out_b))
    assert files_a == files_b
    for name in files_a:
        assert (out_a / name).read_bytes() == (out_b / name).read_bytes(), name

    report = _validate(out_a)
    errors = [issue for issue in report["issues"]["issues"] if issue["severity"] == "error"]
    assert errors == [], errors

    # what a researcher sees
    events = pd.read_csv(next(out_a.glob("sub-*/eeg/*_events.tsv")), sep="\t")
    assert sorted(events["sample_cid"]) == sorted(exported.consenting)
    assert list(events["trial_type"]) == ["label/square", "label/other", "label/square"]
    assert list(events["onset"]) == [4.0, 11.0, 16.0]
    assert (events["liveness"] > 0.5).all()
    participants = pd.read_csv(out_a / "participants.tsv", sep="\t")
    assert list(participants.columns) == ["participant_id"]
    assert "0x" not in (out_a / "participants.tsv").read_text()
    channels = pd.read_csv(next(out_a.glob("sub-*/eeg/*_channels.tsv")), sep="\t")
    assert channels["status_description"].str.startswith("quality index").all()
    table = pd.read_parquet(out_a / FEATURES)
    assert sorted(table.sample_cid) == sorted(exported.consenting)
    features = pd.DataFrame([dict(m) for m in table.features])
    assert "band_power.alpha" in features.columns and features.notna().all().all()
    description = json.loads((out_a / "dataset_description.json").read_text())
    assert description["MindprintProvenance"]["contracts"]["ProvenanceRegistry"] == exported.running.deployment.registry
    path = mne_bids.BIDSPath(
        subject=participants.participant_id[0].removeprefix("sub-"), task="labeling", run=1, datatype="eeg", root=out_a
    )
    raw = mne_bids.read_raw_bids(path, verbose="error")
    labels = {d for d in raw.annotations.description if d != "BAD_ACQ_SKIP"}  # MNE marks the EDF's padding
    assert sorted(labels) == ["label/other", "label/square"]

    checked = verify_dataset(out_a, chain=exported.running.chain)
    assert checked.ok, checked.problems
    assert checked.samples == 3 and checked.recordings == 1 and checked.on_chain.startswith("chain")


def test_one_changed_byte_anywhere_is_reported(exported: Exported) -> None:
    out = exported.tmp / "ds-tamper"
    export_dataset(exported.source(), out, projects=[exported.project])
    names = [n for n in iter_files(out)]
    assert DIGESTS in [n.as_posix() for n in names]
    for name in names:
        copy = exported.tmp / "tampered"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(out, copy)
        target = copy / name
        data = bytearray(target.read_bytes())
        position = len(data) // 2
        data[position] ^= 0x01
        target.write_bytes(bytes(data))
        report = verify_dataset(copy)
        assert not report.ok, f"flipping a bit of {name} went unnoticed"
        assert any(
            p.file == name.as_posix() or (name.as_posix() == DIGESTS and p.file != "") for p in report.problems
        ), (name, report.problems)


def test_semantic_checks_catch_a_consistent_forgery(exported: Exported) -> None:
    """Rewrite a label *and* the digest list: the signed sample still disagrees."""
    out = exported.tmp / "ds-forged"
    export_dataset(exported.source(), out, projects=[exported.project])
    events_path = next(out.glob("sub-*/eeg/*_events.tsv"))
    events_path.write_text(events_path.read_text().replace("\tsquare\t", "\tother\t", 1))
    from mindprint.export.bids import sha256_file

    lines = [f"{sha256_file(out / p)}  {p.as_posix()}\n" for p in iter_files(out) if p.as_posix() != DIGESTS]
    (out / DIGESTS).write_text("".join(lines))
    report = verify_dataset(out)
    assert any("the signed sample says" in p.reason for p in report.problems), report.problems


def test_researcher_key_grant_and_crypto_shredding(exported: Exported) -> None:
    platform = exported.running.platform
    researcher = RecipientKey.generate()
    with pytest.raises(ExportError, match="not granted"):
        export_dataset(exported.source(researcher), exported.tmp / "ds-no-grant")
    for session in {
        json.loads(p.read_text())["session"] for p in _dataset_a(exported).glob("sub-*/eeg/*_provenance.json")
    }:
        wrapped = next(w for w in platform.keys.wrapped(session) if w.recipient == platform.platform_key.public_key)
        platform.keys.add(
            session, wrap_key(unwrap_key(wrapped, platform.platform_key, session), researcher.public_key, session)
        )
    summary = export_dataset(exported.source(researcher), exported.tmp / "ds-researcher")
    assert summary.samples == 3
    with pytest.raises(ExportError, match="not empty"):
        export_dataset(exported.source(researcher), exported.tmp / "ds-researcher")


def test_requester_downloads_the_export_from_the_api(exported: Exported) -> None:
    import io
    import zipfile

    client = exported.client
    requester = sign_in(client, REQUESTER)
    response = client.get(f"/projects/{exported.project}/export", headers=_auth(requester))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    again = client.get(f"/projects/{exported.project}/export", headers=_auth(requester))
    assert again.content == response.content  # deterministic, zip included
    target = exported.tmp / "from-api"
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(target)
    report = verify_dataset(target / "dataset", chain=exported.running.chain)
    assert report.ok and report.samples == 3, report.problems
    contributor = sign_in(client, Account.create())
    assert client.get(f"/projects/{exported.project}/export", headers=_auth(contributor)).status_code == 403
    assert client.get("/projects/999/export", headers=_auth(requester)).status_code == 404
    assert client.get(f"/projects/{2**64}/export", headers=_auth(requester)).status_code == 422  # not an id


def test_cli_export_and_verify(exported: Exported, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mindprint.api.settings import get_settings
    from mindprint.cli import app

    settings = api_settings(exported.tmp, data_dir=exported.tmp / "platform")
    monkeypatch.setenv("MINDPRINT_HOME", str(exported.tmp))
    monkeypatch.setenv("MINDPRINT_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        key_path = exported.tmp / "researcher.key"
        created = runner.invoke(app, ["researcher", "init", str(key_path)])
        assert created.exit_code == 0, created.output
        public = created.output.split("public key")[1].split()[0]
        refused = runner.invoke(app, ["export", str(exported.tmp / "cli-none"), "--researcher-key", str(key_path)])
        assert refused.exit_code == 1 and "not granted" in refused.output
        granted = runner.invoke(app, ["grant", public, "--project", str(exported.project)])
        assert granted.exit_code == 0 and "granted 1 session" in granted.output, granted.output
        out = exported.tmp / "cli-ds"
        done = runner.invoke(app, ["export", str(out), "--researcher-key", str(key_path)])
        assert done.exit_code == 0 and "exported 3 samples" in done.output, done.output
        ok = runner.invoke(app, ["verify", str(out), "--json"])
        assert ok.exit_code == 0 and json.loads(ok.output)["ok"] is True, ok.output
        edf = next(out.glob("sub-*/eeg/*_eeg.edf"))
        data = bytearray(edf.read_bytes())
        signals = int(data[252:256].decode())
        data[256 * (signals + 1) + 101] ^= 0x40  # a high bit of one EEG sample in the first record
        edf.write_bytes(bytes(data))
        bad = runner.invoke(app, ["verify", str(out), "--json"])
        assert bad.exit_code == 5
        problems = json.loads(bad.output)["problems"]
        reasons = {p["reason"].split(" (")[0] for p in problems if p["file"].endswith("_eeg.edf")}
        assert reasons == {"content changed: SHA-256 differs from SHA256SUMS", "EEG differs from the signed chunks"}, (
            problems
        )
    finally:
        get_settings.cache_clear()


def test_consent_statements_are_checked(exported: Exported) -> None:
    client = exported.client
    wallet = Account.create()
    token = sign_in(client, wallet)
    message = client.get("/consent", headers=_auth(token)).json()["message"]
    assert "I grant consent" in message and wallet.address in message
    stranger = Account.create().sign_message(encode_defunct(text=message)).signature.to_0x_hex()
    assert (
        client.post("/consent", json={"message": message, "signature": stranger}, headers=_auth(token)).status_code
        == 422
    )
    other = Account.create()
    other_message = message.replace(wallet.address, other.address)
    signed = other.sign_message(encode_defunct(text=other_message)).signature.to_0x_hex()
    assert (
        client.post("/consent", json={"message": other_message, "signature": signed}, headers=_auth(token)).status_code
        == 403
    )
    stale = message.rsplit("Issued At: ", 1)[0] + "Issued At: 2020-01-01T00:00:00Z"
    signed = wallet.sign_message(encode_defunct(text=stale)).signature.to_0x_hex()
    response = client.post("/consent", json={"message": stale, "signature": signed}, headers=_auth(token))
    assert response.status_code == 422 and "stale" in response.json()["detail"]
    assert client.get("/consent", headers=_auth(token)).json()["consent"] is False


def test_verify_against_the_wrong_chain_and_a_non_dataset(exported: Exported) -> None:
    from mindprint.ledger.chain import ChainClient, deploy_contracts

    out = _dataset_a(exported)
    fresh = ChainClient.embedded()  # same chain id, but none of these roots were anchored on it
    report = verify_dataset(out, chain=fresh)
    assert not report.ok and any("ProvenanceRegistry" in p.reason for p in report.problems), report.problems
    deployment = deploy_contracts(fresh)  # the same deployer and nonces: the same addresses, no anchors
    assert deployment.registry == exported.running.deployment.registry
    report = verify_dataset(out, chain=fresh)
    assert any("is not anchored on chain" in p.reason for p in report.problems), report.problems
    empty = exported.tmp / "not-a-dataset"
    empty.mkdir(exist_ok=True)
    assert [p.file for p in verify_dataset(empty).problems] == ["dataset_description.json"]


def test_interrupted_export_leaves_nothing_and_erased_sessions_are_skipped(exported: Exported) -> None:
    out = exported.tmp / "ds-interrupted"

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_dataset(exported.source(), out, progress=interrupt)
    assert not out.exists() and not (exported.tmp / ".ds-interrupted.partial").exists()

    # crypto-shredding: the session's wrapped keys erased → nothing left to export
    keys = exported.running.platform.keys
    session = json.loads(next(_dataset_a(exported).glob("sub-*/eeg/*_provenance.json")).read_text())["session"]
    saved = (keys.root / f"{session}.json").read_bytes()
    try:
        assert keys.erase(session)
        with pytest.raises(ExportError, match="erased or not granted"):
            export_dataset(exported.source(), out)
        assert not out.exists()
    finally:
        (keys.root / f"{session}.json").write_bytes(saved)


def test_brainvision_export_is_valid_lossless_and_verified(exported: Exported) -> None:
    out = exported.tmp / "ds-bv"
    shutil.rmtree(out, ignore_errors=True)
    summary = export_dataset(exported.source(), out, projects=[exported.project], fmt="BrainVision")
    assert summary.samples == 3
    assert sorted(p.suffix for p in out.glob("sub-*/eeg/*_eeg.*")) == [".eeg", ".json", ".vhdr", ".vmrk"]
    errors = [i for i in _validate(out)["issues"]["issues"] if i["severity"] == "error"]
    assert errors == [], errors
    checked = verify_dataset(out, chain=exported.running.chain)
    assert checked.ok, checked.problems
    data = next(out.glob("sub-*/eeg/*_eeg.eeg"))
    raw = bytearray(data.read_bytes())
    raw[4 * 1001 + 2] ^= 0x01  # a low mantissa bit of one float32 sample: lossless means it shows
    data.write_bytes(bytes(raw))
    reasons = {p.reason.split(" (")[0] for p in verify_dataset(out).problems if p.file.endswith("_eeg.eeg")}
    assert "content changed: SHA-256 differs from SHA256SUMS" in reasons
    assert any("EEG differs" in p.reason for p in verify_dataset(out).problems), "float32 change not seen in the data"
    with pytest.raises(Exception, match="format must be one of"):
        export_dataset(exported.source(), exported.tmp / "ds-bad-format", fmt="GDF")


def test_cli_export_and_verify_against_anvil(tmp_path: Path, anvil_url: str) -> None:
    """The real chain: platform anchoring on anvil; `mindprint export` and
    `mindprint verify --rpc-url` run as separate processes."""
    import os

    from .services import ANVIL_KEY

    settings = api_settings(tmp_path, data_dir=tmp_path / "platform")
    running = start_platform(settings, rpc_url=anvil_url, operator_key=ANVIL_KEY, worker_interval=3600, deploy=True)
    try:
        with TestClient(running.app) as client:
            project = _squares_project(client)
            token, wallet, cids = _contribute(client, tmp_path, "carol", [4, 12], offset=40)
            consent(client, token, wallet)
            running.worker.run_once()
    finally:
        running.close()
    env = {**os.environ, "MINDPRINT_HOME": str(tmp_path), "MINDPRINT_DATABASE_URL": settings.database_url}
    mindprint = [sys.executable, "-m", "mindprint.cli"]
    out = tmp_path / "dataset"
    done = subprocess.run(
        [*mindprint, "export", str(out), "--project", str(project)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0 and "exported 2 samples" in done.stdout, done.stdout + done.stderr
    checked = subprocess.run(
        [*mindprint, "verify", str(out), "--rpc-url", anvil_url, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(checked.stdout)
    assert checked.returncode == 0 and report["ok"] and report["samples"] == 2, report
    assert report["on_chain"].startswith("chain 31337"), report
    assert sorted(
        json.loads(next(out.glob("sub-*/eeg/*_provenance.json")).read_text())["samples"][i]["cid"] for i in (0, 1)
    ) == sorted(cids)
