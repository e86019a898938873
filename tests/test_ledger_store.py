"""Blockstore, CAR, encryption and Merkle trees (in-process)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindprint.core.errors import BlockCorruptError, BlockNotFoundError, CryptoError, LedgerError
from mindprint.core.ipld import cid_for_block
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.crypto import (
    KeyStore,
    RecipientKey,
    new_data_key,
    open_payload,
    seal_payload,
    unwrap_key,
    wrap_key,
)
from mindprint.ledger.merkle import MerkleTree, hash_pair, reward_leaf, sample_leaf, verify_proof


def _dag(store: Blockstore) -> tuple[object, list[object]]:
    leaves = [store.put(os.urandom(64)) for _ in range(3)]
    middle = store.put_node({"leaves": leaves[:2], "n": 2})
    root = store.put_node({"middle": middle, "extra": leaves[2]})
    return root, [middle, *leaves]


def test_put_get_verifies_bytes(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    cid = store.put(b"payload")
    assert cid == cid_for_block(b"payload", "raw") and store.get(cid) == b"payload"
    assert store.put(b"payload") == cid  # idempotent
    path = store._path(cid)
    path.write_bytes(b"payloaD")
    with pytest.raises(BlockCorruptError):
        store.get(cid)
    with pytest.raises(BlockNotFoundError):
        store.get(cid_for_block(b"missing", "raw"))


def _writer(root: str, seed: int) -> list[str]:
    store = Blockstore(Path(root))
    shared = [store.put(f"shared-{i}".encode() * 100) for i in range(200)]
    own = [store.put(f"own-{seed}-{i}".encode()) for i in range(200)]
    return [str(c) for c in shared + own]


def test_two_processes_writing_at_once(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_writer, [(str(tmp_path), 1), (str(tmp_path), 2)])
    store = Blockstore(tmp_path)
    for cids in results:
        for cid in cids:
            store.get(cid)  # present and verified
    assert len(list(store)) == 600
    assert not list(tmp_path.glob("blocks/*/.tmp-*"))


def test_pins_and_garbage_collection(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    root, members = _dag(store)
    loose = store.put(b"unpinned")
    store.pin(root)
    removed = store.gc()
    assert removed == [loose]
    for cid in [root, *members]:
        store.get(cid)  # type: ignore[arg-type]
    store.unpin(root)  # type: ignore[arg-type]
    assert len(store.gc()) == 5 and list(store) == []


def test_pin_refuses_incomplete_dag(tmp_path: Path) -> None:
    store = Blockstore(tmp_path)
    root = store.put_node({"missing": cid_for_block(b"nowhere", "raw")})
    with pytest.raises(BlockNotFoundError):
        store.pin(root)


def test_car_round_trip_and_corruption(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "a")
    root, members = _dag(store)
    car = tmp_path / "dag.car"
    assert store.export_car([root], car) == 5  # type: ignore[list-item]
    other = Blockstore(tmp_path / "b")
    assert other.import_car(car) == [root]
    assert set(other) == {root, *members}
    data = bytearray(car.read_bytes())
    data[-5] ^= 1
    car.write_bytes(bytes(data))
    with pytest.raises(BlockCorruptError):
        Blockstore(tmp_path / "c").import_car(car)
    car.write_bytes(bytes(data[:-3]))
    with pytest.raises(LedgerError, match="truncated"):
        Blockstore(tmp_path / "d").import_car(car)


def test_encryption_round_trip_and_binding() -> None:
    key = new_data_key()
    envelope = seal_payload(key, b"eeg bytes", b"session-1/chunk")
    assert b"eeg bytes" not in envelope
    assert open_payload(key, envelope, b"session-1/chunk") == b"eeg bytes"
    with pytest.raises(CryptoError):
        open_payload(key, envelope, b"session-2/chunk")  # moved to another session
    tampered = envelope[:-1] + bytes([envelope[-1] ^ 1])
    with pytest.raises(CryptoError):
        open_payload(key, tampered, b"session-1/chunk")
    with pytest.raises(CryptoError):
        open_payload(new_data_key(), envelope, b"session-1/chunk")


def test_key_wrapping_for_platform_and_researchers(tmp_path: Path) -> None:
    platform, researcher, stranger = RecipientKey.generate(), RecipientKey.generate(), RecipientKey.generate()
    key = new_data_key()
    store = KeyStore(tmp_path / "keys")
    for recipient in (platform, researcher):
        store.add("s1", wrap_key(key, recipient.public_key, "s1"))
    assert store.data_key("s1", platform) == key
    assert store.data_key("s1", researcher) == key
    with pytest.raises(CryptoError, match="no key for recipient"):
        store.data_key("s1", stranger)
    wrapped = store.wrapped("s1")[0]
    with pytest.raises(CryptoError):
        unwrap_key(wrapped, platform, "s2")  # bound to its session
    assert oct((tmp_path / "keys" / "s1.json").stat().st_mode & 0o777) == "0o600"


def test_erasing_keys_makes_pinned_data_unreadable(tmp_path: Path) -> None:
    platform = RecipientKey.generate()
    blocks = Blockstore(tmp_path / "blocks")
    keys = KeyStore(tmp_path / "keys")
    data_key = new_data_key()
    keys.add("s1", wrap_key(data_key, platform.public_key, "s1"))
    cid = blocks.put(seal_payload(data_key, b"raw EEG", b"s1"))
    blocks.pin(cid)
    assert open_payload(keys.data_key("s1", platform), blocks.get(cid), b"s1") == b"raw EEG"
    del data_key
    assert keys.erase("s1")
    assert blocks.get(cid)  # the ciphertext is still pinned ...
    with pytest.raises(CryptoError, match="erased"):
        keys.data_key("s1", platform)  # ... but nobody can read it any more


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=70, unique=True), st.data())
def test_every_merkle_proof_verifies_and_no_other_leaf_does(payloads: list[bytes], data: st.DataObject) -> None:
    leaves = [sample_leaf(p) for p in payloads]
    tree = MerkleTree.build(leaves)
    for index, leaf in enumerate(leaves):
        assert verify_proof(leaf, tree.proof(index), tree.root)
    index = data.draw(st.integers(0, len(leaves) - 1))
    assert not verify_proof(sample_leaf(payloads[index] + b"x"), tree.proof(index), tree.root)
    if len(leaves) > 1:
        other = (index + 1) % len(leaves)
        assert not verify_proof(leaves[index], tree.proof(other), tree.root) or tree.proof(other) == tree.proof(index)


def test_leaves_are_domain_separated() -> None:
    a, b = sample_leaf(b"x"), sample_leaf(b"y")
    assert sample_leaf(hash_pair(a, b)) != hash_pair(a, b)  # an inner node is never a leaf
    assert reward_leaf(1, "0x" + "11" * 20, 5) != reward_leaf(2, "0x" + "11" * 20, 5)
    with pytest.raises(LedgerError):
        MerkleTree.build([])


def test_sealed_session_hides_eeg_and_verifies_through_encryption(tmp_path: Path) -> None:
    import numpy as np

    from mindprint.core.ipld import car_header, car_section
    from mindprint.device.keys import DeviceKey
    from mindprint.device.session import SESSION_FILE, verify_session
    from mindprint.ledger.sealing import open_sealed_session, seal_session

    from .conftest import make_chunks, write_session

    key = DeviceKey.generate()
    chunks = make_chunks(4)
    session = write_session(tmp_path / "s", key, chunks)
    car = (session / SESSION_FILE).read_bytes()
    store = Blockstore(tmp_path / "blocks")
    data_key = new_data_key()
    manifest = seal_session(car, "s-1", data_key, store)
    sample_bytes = np.ascontiguousarray(chunks[2].samples, dtype="<f4").tobytes()[:64]
    for cid in store:
        assert sample_bytes not in store.get(cid)  # no plaintext EEG anywhere in the store
    opened = open_sealed_session(manifest, data_key, store)
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    from multiformats import CID

    roots = [CID.decode(bytes(r)) for r in store.get_node(manifest)["roots"]]
    (rebuilt / SESSION_FILE).write_bytes(car_header(roots) + b"".join(car_section(b.cid, b.data) for b in opened))
    report = verify_session(rebuilt)
    assert report.ok and report.chunks == 4 and report.device == key.device_id  # signatures checked after decryption
    with pytest.raises(CryptoError):
        open_sealed_session(manifest, new_data_key(), store)
    altered = bytearray(car)
    altered[len(car) // 2] ^= 1
    with pytest.raises(LedgerError):
        seal_session(bytes(altered), "s-1", data_key, store)
