"""Every contract's access rules and failure paths, on the embedded EVM and on anvil."""

from __future__ import annotations

import json
import time

import pytest
from eth_account import Account

from mindprint.core.errors import ChainError
from mindprint.ledger.chain import deploy_contracts
from mindprint.ledger.contracts import ARTIFACT_DIR, CONTRACTS, compile_contract
from mindprint.ledger.merkle import MerkleTree, sample_leaf
from mindprint.ledger.rewards import build_epoch, claim_reward, publish_epoch

from .conftest import other_account


def test_committed_artifacts_match_a_fresh_compile() -> None:
    for name in CONTRACTS:
        committed = json.loads((ARTIFACT_DIR / f"{name}.json").read_text())
        fresh = compile_contract(name)
        assert fresh["bytecode"] == committed["bytecode"], f"{name}: run `python -m mindprint.ledger.contracts`"
        assert fresh["abi"] == committed["abi"]
        assert committed["evm_version"] == "cancun"


def _reverts(reason: str, call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ChainError) as info:
        call()
    assert info.value.reason and reason in info.value.reason, info.value


def test_provenance_registry_rules(chain) -> None:  # type: ignore[no-untyped-def]
    deployment = deploy_contracts(chain)
    registry = chain.contract("ProvenanceRegistry", deployment.registry)
    outsider = other_account(chain, 1)
    as_outsider = outsider.contract("ProvenanceRegistry", deployment.registry)
    leaves = [sample_leaf(i.to_bytes(4, "big") * 9) for i in range(1024)]
    tree = MerkleTree.build(leaves)
    digest = b"\x07" * 32

    _reverts("not an operator", lambda: outsider.send(as_outsider.functions.anchor(tree.root, digest, 1024)))
    _reverts(
        "caller is not the owner", lambda: outsider.send(as_outsider.functions.set_operator(outsider.address, True))
    )
    _reverts("empty root", lambda: chain.send(registry.functions.anchor(b"\0" * 32, digest, 1)))
    _reverts("bad sample count", lambda: chain.send(registry.functions.anchor(tree.root, digest, 0)))

    result = chain.send(registry.functions.anchor(tree.root, digest, 1024))
    assert result.gas_used / 1024 <= 50, f"{result.gas_used / 1024:.1f} gas per sample"
    block, timestamp, count = chain.call(registry.functions.get_anchor(tree.root))
    assert (block, count) == (result.block_number, 1024) and abs(timestamp - time.time()) < 3600 * 24 * 365 * 10
    _reverts("already anchored", lambda: chain.send(registry.functions.anchor(tree.root, digest, 1024)))

    assert chain.call(registry.functions.verify_inclusion(tree.root, leaves[77], tree.proof(77)))
    assert not chain.call(registry.functions.verify_inclusion(tree.root, leaves[78], tree.proof(77)))
    assert not chain.call(registry.functions.verify_inclusion(b"\x01" * 32, leaves[77], tree.proof(77)))

    chain.send(registry.functions.set_operator(outsider.address, True))
    outsider.send(as_outsider.functions.anchor(b"\x02" * 32, digest, 3))
    chain.send(registry.functions.set_operator(outsider.address, False))
    _reverts("not an operator", lambda: outsider.send(as_outsider.functions.anchor(b"\x03" * 32, digest, 3)))


def _bind_signature(chain, registry_address: str, signer, device: bytes, nonce: int, deadline: int) -> bytes:  # type: ignore[no-untyped-def]
    domain = {
        "name": "mindprint DeviceRegistry",
        "version": "1",
        "chainId": chain.chain_id,
        "verifyingContract": registry_address,
    }
    types = {
        "BindDevice": [
            {"name": "device", "type": "bytes32"},
            {"name": "contributor", "type": "address"},
            {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ]
    }
    message = {"device": device, "contributor": signer.address, "nonce": nonce, "deadline": deadline}
    return bytes(Account.sign_typed_data(signer.key, domain, types, message).signature)


def test_device_registry_binds_only_with_the_contributors_signature(chain) -> None:  # type: ignore[no-untyped-def]
    deployment = deploy_contracts(chain)
    devices = chain.contract("DeviceRegistry", deployment.devices)
    contributor = other_account(chain, 1)
    impostor = other_account(chain, 2)
    device = b"\x42" * 32
    deadline = chain.w3.eth.get_block("latest")["timestamp"] + 3600

    forged = _bind_signature(chain, deployment.devices, impostor.account, device, 0, deadline)
    _reverts(
        "invalid signature", lambda: chain.send(devices.functions.bind(device, contributor.address, deadline, forged))
    )
    expired = _bind_signature(chain, deployment.devices, contributor.account, device, 0, 1)
    _reverts("expired", lambda: chain.send(devices.functions.bind(device, contributor.address, 1, expired)))

    good = _bind_signature(chain, deployment.devices, contributor.account, device, 0, deadline)
    chain.send(devices.functions.bind(device, contributor.address, deadline, good))  # relayed by the platform
    assert chain.call(devices.functions.device_owner(device)) == contributor.address
    assert chain.call(devices.functions.is_active(device, contributor.address))
    _reverts(
        "invalid signature", lambda: chain.send(devices.functions.bind(device, contributor.address, deadline, good))
    )  # replay

    other = _bind_signature(chain, deployment.devices, impostor.account, device, 0, deadline)
    _reverts(
        "bound to another contributor",
        lambda: chain.send(devices.functions.bind(device, impostor.address, deadline, other)),
    )

    as_impostor = impostor.contract("DeviceRegistry", deployment.devices)
    _reverts("not the device's contributor", lambda: impostor.send(as_impostor.functions.revoke(device)))
    as_contributor = contributor.contract("DeviceRegistry", deployment.devices)
    contributor.send(as_contributor.functions.revoke(device))
    assert not chain.call(devices.functions.is_active(device, contributor.address))
    _reverts("already revoked", lambda: contributor.send(as_contributor.functions.revoke(device)))
    again = _bind_signature(chain, deployment.devices, contributor.account, device, 1, deadline)
    _reverts("revoked", lambda: chain.send(devices.functions.bind(device, contributor.address, deadline, again)))


def test_rewards_claim_once_with_a_valid_proof(chain) -> None:  # type: ignore[no-untyped-def]
    deployment = deploy_contracts(chain)
    token = chain.contract("RewardToken", deployment.token)
    alice, bob = other_account(chain, 1), other_account(chain, 2)
    epoch = build_epoch(1, [(alice.address, 1.0), (alice.address, 0.5), (bob.address, 0.5)], pool=1000)
    assert epoch.claims[alice.address].amount == 750 and epoch.claims[bob.address].amount == 250

    as_alice = alice.contract("RewardDistributor", deployment.distributor)
    _reverts(
        "not an operator", lambda: alice.send(as_alice.functions.publish_epoch(1, bytes.fromhex(epoch.root), 1000))
    )
    _reverts("unknown epoch", lambda: claim_reward(alice, deployment.distributor, epoch.claims[alice.address]))
    publish_epoch(chain, deployment.distributor, epoch)
    _reverts("already published", lambda: publish_epoch(chain, deployment.distributor, epoch))

    claim = epoch.claims[alice.address]
    bad = type(claim)(claim.epoch, claim.account, claim.amount + 1, claim.proof, claim.root)
    _reverts(
        "invalid proof",
        lambda: alice.send(
            as_alice.functions.claim(1, alice.address, bad.amount, [bytes.fromhex(p) for p in bad.proof])
        ),
    )
    claim_reward(alice, deployment.distributor, claim)
    assert chain.call(token.functions.balanceOf(alice.address)) == 750
    _reverts("already claimed", lambda: claim_reward(alice, deployment.distributor, claim))
    claim_reward(chain, deployment.distributor, epoch.claims[bob.address])  # anyone may submit for bob
    assert chain.call(token.functions.balanceOf(bob.address)) == 250

    as_bob_token = bob.contract("RewardToken", deployment.token)
    _reverts("access is denied", lambda: bob.send(as_bob_token.functions.mint(bob.address, 10)))

    greedy = build_epoch(2, [(alice.address, 1.0)], pool=500)
    chain.send(
        chain.contract("RewardDistributor", deployment.distributor).functions.publish_epoch(
            2, bytes.fromhex(greedy.root), 100
        )
    )
    _reverts("exceeds epoch total", lambda: claim_reward(alice, deployment.distributor, greedy.claims[alice.address]))


def test_cli_deploys_and_claims_on_anvil(anvil_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from mindprint.cli import app
    from mindprint.ledger.chain import ChainClient, Deployment

    from .services import ANVIL_KEY, ANVIL_KEYS

    runner = CliRunner()
    (tmp_path / "operator.key").write_text(ANVIL_KEY)
    deployed = runner.invoke(
        app,
        [
            "chain",
            "deploy",
            "--rpc-url",
            anvil_url,
            "--out",
            str(tmp_path / "d.json"),
            "--key-file",
            str(tmp_path / "operator.key"),
        ],
    )
    assert deployed.exit_code == 0, deployed.output
    deployment = Deployment.load(tmp_path / "d.json")
    operator = ChainClient.connect(anvil_url, ANVIL_KEY)
    wallet = Account.from_key(ANVIL_KEYS[2])
    epoch = build_epoch(7, [(wallet.address, 0.9)], pool=42)
    publish_epoch(operator, deployment.distributor, epoch)
    epoch.claims[wallet.address].save(tmp_path / "claim.json")
    (tmp_path / "wallet.key").write_text(ANVIL_KEYS[2])
    args = [
        "rewards",
        "claim",
        str(tmp_path / "claim.json"),
        "--rpc-url",
        anvil_url,
        "--distributor",
        deployment.distributor,
        "--wallet-key-file",
        str(tmp_path / "wallet.key"),
    ]
    claimed = runner.invoke(app, args)
    assert claimed.exit_code == 0, claimed.output
    assert "claimed 42" in claimed.stdout
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already claimed" in again.output


def test_nonce_is_resynchronised_when_another_sender_used_the_key(chain) -> None:  # type: ignore[no-untyped-def]
    from mindprint.ledger.chain import ChainClient

    deployment = deploy_contracts(chain)
    twin = ChainClient(chain.w3, chain.account)  # same key, separate nonce counter
    registry = twin.contract("ProvenanceRegistry", deployment.registry)
    twin.send(registry.functions.anchor(b"\x0a" * 32, b"\x01" * 32, 1))
    twin.send(registry.functions.anchor(b"\x0b" * 32, b"\x01" * 32, 1))
    result = chain.send(
        chain.contract("ProvenanceRegistry", deployment.registry).functions.anchor(b"\x0c" * 32, b"\x01" * 32, 1)
    )
    assert result.status == 1


def test_unreachable_node_is_a_clear_error_after_retries() -> None:
    from mindprint.ledger.chain import ChainClient

    from .services import ANVIL_KEY, free_port

    started = time.monotonic()
    with pytest.raises(ChainError, match="failed after 3 attempts"):
        ChainClient.connect(f"http://127.0.0.1:{free_port()}", ANVIL_KEY, retries=3, backoff=0.05, rpc_timeout=1.0)
    assert time.monotonic() - started < 10


def test_allocation_never_exceeds_the_pool() -> None:
    """One contributor of quality 0.6516 split 10^18 in floats as 10^18 + 128 (a clean-clone run
    of the challenge test paid more than the pool); shares are exact and sum to the pool."""
    from mindprint.ledger.rewards import allocate

    assert allocate({"a": 0.651592972722763}, 10**18) == {"a": 10**18}
    weights = {f"c{i}": 0.1 + 0.137 * i for i in range(7)}
    assert sum(allocate(weights, 10**18 + 7).values()) == 10**18 + 7
