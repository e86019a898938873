"""Reward epochs: allocations weighted by quality, one Merkle root per epoch, claims.

An epoch's pool is split among contributors in proportion to the summed quality of
their accepted samples, in integer token units with the largest-remainder method (the
allocations add up to the pool exactly). The tree's leaves are
``keccak256(keccak256(abi.encode(epoch, account, amount)))``, what RewardDistributor
checks; each contributor gets a claim (epoch, account, amount, proof).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from eth_utils import to_checksum_address

from mindprint.core.errors import LedgerError
from mindprint.ledger.chain import ChainClient, TxResult
from mindprint.ledger.merkle import MerkleTree, reward_leaf, verify_proof

__all__ = ["Claim", "Epoch", "allocate", "build_epoch", "claim_reward", "publish_epoch"]


@dataclass(frozen=True, slots=True)
class Claim:
    """What a contributor needs to claim one epoch's reward."""

    epoch: int
    account: str
    amount: int
    proof: list[str]
    root: str

    def verify(self) -> bool:
        return verify_proof(
            reward_leaf(self.epoch, self.account, self.amount),
            [bytes.fromhex(p) for p in self.proof],
            bytes.fromhex(self.root),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Claim:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise LedgerError(f"{path} is not a mindprint reward claim: {err}") from err


@dataclass(frozen=True, slots=True)
class Epoch:
    epoch: int
    root: str
    total: int
    claims: dict[str, Claim]


def allocate(weights: dict[str, float], pool: int) -> dict[str, int]:
    """Split ``pool`` units by ``weights`` (largest remainder; sums to ``pool``)."""
    if pool < 0:
        raise LedgerError(f"pool must be non-negative, got {pool}")
    # exact rationals: in floats pool * w / total can round above the pool (10^18 + 128 for a
    # single contributor), and the shares then sum to more than the pool holds
    positive = {a: Fraction(w) for a, w in weights.items() if w > 0}
    total = sum(positive.values(), Fraction(0))
    if not positive or total <= 0 or pool == 0:
        return {}
    exact = {a: pool * w / total for a, w in positive.items()}
    shares = {a: math.floor(v) for a, v in exact.items()}
    left = pool - sum(shares.values())
    for account in sorted(exact, key=lambda a: (-(exact[a] - shares[a]), a))[:left]:
        shares[account] += 1
    return {a: s for a, s in shares.items() if s > 0}


def build_epoch(epoch: int, samples: Iterable[tuple[str, float]], pool: int) -> Epoch:
    """Allocations for ``epoch`` from (contributor address, quality 0–1) per accepted sample."""
    weights: dict[str, float] = defaultdict(float)
    for account, quality in samples:
        if not 0 <= quality <= 1:
            raise LedgerError(f"quality must be within 0–1, got {quality}")
        weights[to_checksum_address(account)] += quality
    shares = allocate(dict(weights), pool)
    if not shares:
        raise LedgerError(f"epoch {epoch} has nothing to distribute")
    accounts = sorted(shares)
    tree = MerkleTree.build([reward_leaf(epoch, a, shares[a]) for a in accounts])
    claims = {
        a: Claim(epoch, a, shares[a], [p.hex() for p in tree.proof(i)], tree.root.hex()) for i, a in enumerate(accounts)
    }
    return Epoch(epoch, tree.root.hex(), sum(shares.values()), claims)


def publish_epoch(client: ChainClient, distributor: str, epoch: Epoch) -> TxResult:
    contract = client.contract("RewardDistributor", distributor)
    return client.send(contract.functions.publish_epoch(epoch.epoch, bytes.fromhex(epoch.root), epoch.total))


def claim_reward(client: ChainClient, distributor: str, claim: Claim) -> TxResult:
    """Claim (sent by ``client``'s account; anyone may submit a claim for the account)."""
    if not claim.verify():
        raise LedgerError("the claim's proof does not lead to its root")
    contract = client.contract("RewardDistributor", distributor)
    return client.send(
        contract.functions.claim(
            claim.epoch, to_checksum_address(claim.account), claim.amount, [bytes.fromhex(p) for p in claim.proof]
        )
    )
