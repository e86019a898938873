"""Merkle trees for anchoring and rewards: keccak256, sorted pairs, domain-separated leaves.

Compatible with OpenZeppelin's ``MerkleProof`` and snekmate's
``merkle_proof_verification`` (what the contracts use): an inner node is
``keccak256(min(a, b) || max(a, b))``; a proof is the list of siblings from leaf to root.
Leaves are hashed twice with a domain prefix (``keccak256(keccak256(domain || data))``)
so that no leaf can be reinterpreted as an inner node (64-byte preimage) and leaves of
one kind cannot pass as another. An odd node at the end of a level moves up unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_canonical_address

from mindprint.core.errors import LedgerError

SAMPLE_DOMAIN = b"mindprint/sample/v1\x00"

__all__ = ["MerkleTree", "hash_pair", "reward_leaf", "sample_leaf", "verify_proof"]


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b if a <= b else b + a)


def sample_leaf(sample_cid: bytes) -> bytes:
    """Leaf of an accepted sample: its binary CID under the sample domain."""
    return keccak(keccak(SAMPLE_DOMAIN + sample_cid))


def reward_leaf(epoch: int, account: str, amount: int) -> bytes:
    """Leaf of a reward: ``keccak256(keccak256(abi.encode(epoch, account, amount)))``."""
    return keccak(keccak(abi_encode(["uint256", "address", "uint256"], [epoch, to_canonical_address(account), amount])))


def verify_proof(leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Offline check, identical to the contracts' check."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


@dataclass(frozen=True, slots=True)
class MerkleTree:
    """A tree over leaf hashes (32 bytes each), kept level by level."""

    levels: tuple[tuple[bytes, ...], ...]

    @classmethod
    def build(cls, leaves: Sequence[bytes]) -> MerkleTree:
        if not leaves:
            raise LedgerError("a Merkle tree needs at least one leaf")
        if any(len(leaf) != 32 for leaf in leaves):
            raise LedgerError("Merkle leaves must be 32-byte hashes")
        levels = [tuple(leaves)]
        while len(levels[-1]) > 1:
            level = levels[-1]
            parents = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                parents.append(level[-1])
            levels.append(tuple(parents))
        return cls(tuple(levels))

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def __len__(self) -> int:
        return len(self.levels[0])

    def proof(self, index: int) -> list[bytes]:
        """Siblings of leaf ``index`` from the bottom level up."""
        if not 0 <= index < len(self):
            raise LedgerError(f"leaf index {index} out of range for {len(self)} leaves")
        proof = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index //= 2
        return proof
