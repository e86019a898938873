"""Ledger benchmarks on anvil: gas per anchored sample, throughput, proofs, blockstore.

    .venv/bin/python benchmarks/ledger.py

Starts anvil and the js-ipfs daemon from tools/ on loopback (as the tests do), prints a
Markdown table with ratios, and stops them.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/signal.py
# would shadow the standard library's `signal`: put the repository root there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import json
import os
import subprocess
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]

from multiformats import CID, multihash

from mindprint.core.ipld import cid_for_block
from mindprint.ledger.anchoring import Anchorer
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.chain import ChainClient, deploy_contracts
from mindprint.ledger.ipfs import KuboClient
from mindprint.ledger.merkle import MerkleTree, sample_leaf, verify_proof
from tests.services import ANVIL_KEY, anvil_node, ipfs_node


def samples(n: int, seed: int) -> list[CID]:
    return [cid_for_block(f"bench-{seed}-{i}".encode(), "dag-cbor") for i in range(n)]


def baseline_contract(client: ChainClient):  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vyper",
            "--evm-version",
            "cancun",
            "-f",
            "abi,bytecode",
            str(ROOT / "benchmarks" / "CidStore.vy"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    factory = client.w3.eth.contract(abi=json.loads(out[0]), bytecode=out[1])
    result = client.send(factory.constructor())
    return client.w3.eth.contract(address=result.contract_address, abi=json.loads(out[0]))


def main() -> None:
    rows = ["| measure | ours | peer | ratio (peer / ours) |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp, anvil_node(Path(tmp)) as url:
        client = ChainClient.connect(url, ANVIL_KEY)
        deployment = deploy_contracts(client)
        registry = client.contract("ProvenanceRegistry", deployment.registry)
        baseline = baseline_contract(client)
        digest = b"\x11" * 32

        # one transaction per sample (each sample its own root)
        per_sample = [
            client.send(registry.functions.anchor(sample_leaf(bytes(c)), digest, 1)).gas_used for c in samples(20, 1)
        ]
        one_tx_gas = sum(per_sample[1:]) / len(per_sample[1:])
        # a CID string per sample, 64 per transaction
        cid_strings = [str(c) for c in samples(64 * 3, 2)]
        string_gas = [
            client.send(baseline.functions.store(cid_strings[i : i + 64])).gas_used
            for i in range(0, len(cid_strings), 64)
        ]
        string_per_sample = sum(string_gas[1:]) / (64 * len(string_gas[1:]))

        for batch in (1, 64, 1024, 16384):
            tree = MerkleTree.build([sample_leaf(bytes(c)) for c in samples(batch, 100 + batch)])
            gas = client.send(registry.functions.anchor(tree.root, digest, batch)).gas_used
            ours = gas / batch
            rows.append(
                f"| gas per sample, batch {batch} | {ours:,.1f} | one tx per sample {one_tx_gas:,.0f} | {one_tx_gas / ours:,.1f}× |"
            )
            rows.append(
                f"| gas per sample, batch {batch} | {ours:,.1f} | CID string per sample {string_per_sample:,.0f} | {string_per_sample / ours:,.1f}× |"
            )
            print(rows[-2], rows[-1], sep="\n", flush=True)

        for batch in (1024, 16384):
            state = Path(tmp) / f"anchor-{batch}"
            anchorer = Anchorer(state / "journal.sqlite", Blockstore(state / "blocks"), client, deployment.registry)
            cids = samples(batch * 2, 900 + batch)
            start = time.perf_counter()
            anchorer.enqueue(cids)
            anchorer.run(max_size=batch)
            seconds = time.perf_counter() - start
            rows.append(
                f"| anchoring throughput, batch {batch} (enqueue + tree + manifest + tx) | {len(cids) / seconds:,.0f} samples/s | | |"
            )
            print(rows[-1], flush=True)
            proofs = [anchorer.proof(c) for c in cids[:2000]]
            start = time.perf_counter()
            assert all(p.verify_offline() for p in proofs)
            offline = len(proofs) / (time.perf_counter() - start)
            start = time.perf_counter()
            assert all(anchorer.verify_on_chain(p) for p in proofs[:300])
            onchain = 300 / (time.perf_counter() - start)
            rows.append(
                f"| proofs verified per second (batch {batch}) | offline {offline:,.0f}/s | on chain (eth_call) {onchain:,.0f}/s | |"
            )
            print(rows[-1], flush=True)

    payloads = [os.urandom(256 * 1024) for _ in range(64)]
    megabytes = len(payloads) * 256 / 1024
    with tempfile.TemporaryDirectory() as tmp:
        store = Blockstore(Path(tmp) / "blocks")
        start = time.perf_counter()
        cids = [store.put(p) for p in payloads]
        put = megabytes / (time.perf_counter() - start)
        start = time.perf_counter()
        for cid in cids:
            store.get(cid)
        get = megabytes / (time.perf_counter() - start)
        with ipfs_node(Path(tmp)) as url, KuboClient(url) as ipfs:
            ipfs.add(os.urandom(1024))
            start = time.perf_counter()
            for p in payloads:
                ipfs.add(p)
            add = megabytes / (time.perf_counter() - start)
            start = time.perf_counter()
            for cid in cids:
                ipfs.block_get(cid)
            node_get = megabytes / (time.perf_counter() - start)
        rows.append(
            f"| blockstore put (256 KiB blocks, fsync) | {put:,.0f} MB/s | IPFS node add {add:,.0f} MB/s | {put / add:,.1f}× faster |"
        )
        rows.append(
            f"| blockstore get (verified) | {get:,.0f} MB/s | IPFS node block/get {node_get:,.0f} MB/s | {get / node_get:,.1f}× faster |"
        )
    digest_check = multihash.digest(b"x", "sha2-256")
    del digest_check
    assert verify_proof(sample_leaf(b"a"), [], sample_leaf(b"a"))
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
