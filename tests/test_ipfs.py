"""Integration with a real IPFS node (the js-ipfs daemon, Kubo RPC API) on loopback."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from multiformats import CID

from mindprint.core.errors import IPFSError
from mindprint.core.ipld import cid_for_block, read_car
from mindprint.device.session import SESSION_FILE
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.ipfs import KuboClient, push_dag

from .conftest import make_chunks, write_session
from .services import free_port, ipfs_node


@pytest.fixture(scope="module")
def ipfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KuboClient]:
    with ipfs_node(tmp_path_factory.mktemp("ipfs")) as url, KuboClient(url) as client:
        yield client


def test_block_cids_are_identical_to_the_nodes(ipfs: KuboClient, tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    session = write_session(tmp_path / "s", key, make_chunks(3))
    sections = read_car((session / SESSION_FILE).read_bytes()).sections
    assert len(sections) == 8
    for section in sections:  # real session blocks: header, chunks, signatures (dag-cbor)
        assert ipfs.block_put(section.block, "dag-cbor") == section.cid
        assert ipfs.block_get(section.cid) == section.block
    payload = os.urandom(4096)
    assert ipfs.block_put(payload, "raw") == cid_for_block(payload, "raw")
    # `ipfs add` of a single raw leaf gives the raw CID of the bytes
    assert ipfs.add(payload) == cid_for_block(payload, "raw")


def test_car_round_trip_both_ways(ipfs: KuboClient, tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "ours")
    leaves = [store.put(os.urandom(300)) for _ in range(4)]
    root = store.put_node({"type": "test", "leaves": leaves, "nested": store.put_node({"l": leaves[0]})})
    car = tmp_path / "ours.car"
    store.export_car([root], car)
    assert ipfs.dag_import(car.read_bytes()) == [root]  # the node accepts our CAR, same root
    assert root in ipfs.pin_ls()
    exported = tmp_path / "theirs.car"
    exported.write_bytes(ipfs.dag_export(root))
    other = Blockstore(tmp_path / "theirs")
    assert other.import_car(exported) == [root]  # we accept the node's CAR, every block verified
    assert set(other) == set(store)
    ipfs.pin_rm(root)
    assert root not in ipfs.pin_ls()


def test_node_down_is_a_clear_error() -> None:
    port = free_port()
    with (
        KuboClient(f"http://127.0.0.1:{port}", timeout=2, retries=2, backoff=0.01) as client,
        pytest.raises(IPFSError, match="unreachable"),
    ):
        client.version()


def test_outage_delays_pinning_but_loses_nothing(tmp_path: Path) -> None:
    """Pin jobs whose node is down stay queued with the error and back off; a worker started
    later (another process would do) pins them once the node is up."""
    from mindprint.labeling.store import Job, make_engine, migrate, sessions
    from mindprint.labeling.verification.model import load_default_model
    from mindprint.labeling.worker import Worker
    from mindprint.ledger.crypto import KeyStore, RecipientKey
    from mindprint.platform.service import Platform

    store = Blockstore(tmp_path / "blocks")
    roots = [str(store.put_node({"sample": i, "payload": store.put(os.urandom(64))})) for i in range(5)]
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    migrate(engine)
    with sessions(engine)() as db:
        db.add_all(Job(kind="pin", ref=root) for root in roots)
        db.commit()
    platform = Platform(load_default_model(), store, KeyStore(tmp_path / "keys"), RecipientKey.generate())
    port = free_port()
    with KuboClient(f"http://127.0.0.1:{port}", timeout=2, retries=1) as down:
        stats = Worker(engine, platform, None, kubo=down, max_backoff=1.0).run_once()
    assert (stats.pinned, stats.failed) == (0, 5)
    with sessions(engine)() as db:
        jobs = db.query(Job).all()
    assert {(j.state, j.attempts) for j in jobs} == {("queued", 1)}
    assert all("unreachable" in (j.last_error or "") and j.not_before is not None for j in jobs)
    with ipfs_node(tmp_path / "node", api_port=port) as url, KuboClient(url) as up:
        worker = Worker(engine, platform, None, kubo=up, max_backoff=1.0)
        deadline = time.monotonic() + 10
        pinned = 0
        while pinned < 5 and time.monotonic() < deadline:  # due after the backoff (1 s), not before
            pinned += worker.run_once().pinned
            time.sleep(0.2)
        assert pinned == 5
        assert {CID.decode(r) for r in roots} <= up.pin_ls()
    with sessions(engine)() as db:
        assert {j.state for j in db.query(Job)} == {"done"}


def test_sealed_session_pinned_on_the_node_opens_only_with_the_key(ipfs: KuboClient, tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    from mindprint.ledger.crypto import KeyStore, RecipientKey, new_data_key, wrap_key
    from mindprint.ledger.sealing import open_sealed_session, seal_session

    session = write_session(tmp_path / "s", key, make_chunks(3))
    store = Blockstore(tmp_path / "device-side")
    data_key = new_data_key()
    platform = RecipientKey.generate()
    keys = KeyStore(tmp_path / "keys")
    keys.add("s-9", wrap_key(data_key, platform.public_key, "s-9"))
    manifest = seal_session((session / SESSION_FILE).read_bytes(), "s-9", data_key, store)
    push_dag(ipfs, store, manifest)
    assert manifest in ipfs.pin_ls()
    # a researcher fetches from the node, not from us
    fetched = tmp_path / "fetched.car"
    fetched.write_bytes(ipfs.dag_export(manifest))
    researcher_store = Blockstore(tmp_path / "researcher")
    researcher_store.import_car(fetched)
    blocks = open_sealed_session(manifest, keys.data_key("s-9", platform), researcher_store)
    assert len(blocks) == 8
    keys.erase("s-9")  # crypto-shredding: the node still pins the envelopes, nobody can open them
    with pytest.raises(Exception, match="erased"):
        keys.data_key("s-9", platform)


def test_serve_pins_streamed_samples_to_the_node(ipfs: KuboClient, tmp_path: Path) -> None:
    """`MINDPRINT_IPFS_URL`: the platform's worker pins each accepted sample's sealed manifest
    (header and the cited chunks' envelopes, as the device encrypted them) on the node."""
    from eth_account import Account
    from fastapi.testclient import TestClient

    from mindprint.api.server import start_platform
    from mindprint.companion.client import PlatformClient
    from mindprint.companion.samples import build_sample
    from mindprint.device.keys import DeviceKey

    from .test_api import _auth, _project, _settings, sign_in
    from .test_api_submissions import _submit
    from .test_samples import T0, real_session

    settings = _settings(tmp_path, data_dir=tmp_path / "platform", ipfs_url=ipfs.url)
    running = start_platform(settings, worker_interval=3600)  # the test drives the worker
    try:
        with TestClient(running.app) as client:
            _project(client, redundancy=1)
            wallet, key = Account.create(), DeviceKey.generate()
            token = sign_in(client, wallet)
            companion = PlatformClient(str(client.base_url), wallet, http=client)
            companion.token = token
            companion.bind_device(key)  # EIP-712 for the deployed DeviceRegistry
            task = client.get("/tasks/next", headers=_auth(token)).json()
            session = real_session(tmp_path / "s", key, seconds=12)
            signed = build_sample(
                session, key, wallet, task=task["id"], label="yes", chain_id=running.chain.chain_id,
                stimulus_ns=T0 + 5 * 10**9, response_ns=T0 + 5 * 10**9 + 6 * 10**8,
            )  # fmt: skip
            verdict = _submit(client, signed, session, _auth(token)).json()
            assert verdict["status"] == "accepted", verdict
            stats = running.worker.run_once()
            assert stats.pinned == 1 and stats.failed == 0
            manifest = client.get(f"/samples/{verdict['sample_cid']}", headers=_auth(token)).json()["sealed_manifest"]
        assert manifest and CID.decode(manifest) in ipfs.pin_ls()
        node = ipfs.block_get(manifest)
        assert node == running.platform.blockstore.get(manifest)
    finally:
        running.close()


def test_worker_pins_federated_models_to_the_node(ipfs: KuboClient, tmp_path: Path) -> None:
    """A round's model and its record are pinned on the IPFS node by the ordinary pin jobs."""
    from mindprint.federated.model import encode_model, new_model
    from mindprint.labeling.store import Job, sessions
    from mindprint.platform.service import platform_for

    from .test_api import _settings

    settings = _settings(tmp_path, data_dir=tmp_path / "platform", ipfs_url=ipfs.url)
    platform = platform_for(settings)
    block, cid = encode_model(new_model(seed=9))
    platform.blockstore.put(block, "dag-cbor")
    assert platform.engine is not None
    with sessions(platform.engine)() as db:
        db.add(Job(kind="pin", ref=str(cid)))
        db.commit()
    from mindprint.api.server import make_worker

    stats = make_worker(platform, settings).run_once()
    assert stats.pinned == 1 and stats.failed == 0
    assert cid in ipfs.pin_ls()
    assert ipfs.block_get(str(cid)) == block
