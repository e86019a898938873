"""Reward epochs: accepted samples since the last epoch, weighted by quality, root on chain.

A sample accepted while its device's challenge–response was still pending (fewer than K
cue trials) is held: it is paid in the first epoch after the device's challenge passes,
and never if it fails — a forger cannot cash the samples the challenge has not judged yet.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mindprint.core.errors import Conflict
from mindprint.labeling.store import Device, FederatedRound, RewardEpoch, Submission, aware, utcnow
from mindprint.platform.service import Platform

__all__ = ["close_epoch", "release_held", "rewards_of"]

#: what one round's update earns, against a sample's liveness × attention (at most 1)
FEDERATED_WEIGHT = 1.0


def close_epoch(db: Session, platform: Platform, pool_wei: int) -> dict[str, Any]:
    """Close an epoch over the accepted samples since the last one and publish its Merkle root."""
    from mindprint.ledger.rewards import build_epoch, publish_epoch

    last = db.scalar(select(func.max(RewardEpoch.until)))
    query = select(Submission.contributor, Submission.scores).where(
        Submission.status == "accepted", Submission.reward_hold.is_(None)
    )
    if last is not None:
        query = query.where(Submission.created > aware(last))
    rows = list(db.execute(query).all())
    rows += release_held(db)
    # federated rounds since the last epoch: every client whose masked update is in the sum
    # (secure aggregation keeps the platform from judging one update on its own)
    rounds = select(FederatedRound.members).where(FederatedRound.phase == "done")
    if last is not None:
        rounds = rounds.where(FederatedRound.finished > aware(last))
    federated = [(c, FEDERATED_WEIGHT) for members in db.scalars(rounds) for c in members.get("u3", [])]
    if not rows and not federated:
        raise Conflict("no accepted samples or federated contributions since the last epoch")
    number = (db.scalar(select(func.max(RewardEpoch.epoch))) or 0) + 1
    weights = [(contributor, scores.get("liveness", 0) * scores.get("attention", 0)) for contributor, scores in rows]
    weights += federated
    epoch = build_epoch(number, weights, pool_wei)
    tx = None
    if platform.chain is not None and platform.distributor:
        tx = publish_epoch(platform.chain, platform.distributor, epoch).tx_hash
    claims = {
        a: {"epoch": c.epoch, "account": c.account, "amount": str(c.amount), "proof": c.proof, "root": c.root}
        for a, c in epoch.claims.items()
    }
    db.add(
        RewardEpoch(epoch=number, root=epoch.root, total=str(epoch.total), claims=claims, tx_hash=tx, until=utcnow())
    )
    db.commit()
    return {"epoch": number, "root": epoch.root, "total": str(epoch.total), "contributors": len(claims), "tx_hash": tx}


def release_held(db: Session) -> list[Any]:
    """Samples accepted while their device's challenge was pending: those of devices that
    have since passed are paid now (``released``), those of devices that failed are not
    (``forfeited``); the rest stay held. Reads the held rows only (an index)."""
    held = db.execute(
        select(Submission, Device.challenge)
        .join(Device, Device.device == Submission.device)
        .where(Submission.reward_hold == "held", Device.challenge.is_not(None))
    ).all()
    paid = []
    for submission, outcome in held:
        submission.reward_hold = "released" if outcome == "passed" else "forfeited"
        if outcome == "passed":
            paid.append((submission.contributor, submission.scores))
    return paid


def rewards_of(db: Session, platform: Platform, address: str) -> dict[str, Any]:
    """A contributor's accepted samples and their claim (for ``mindprint rewards claim``) per epoch."""
    accepted = db.scalar(select(func.count()).where(Submission.contributor == address, Submission.status == "accepted"))
    claims = [
        e.claims[address] for e in db.scalars(select(RewardEpoch).order_by(RewardEpoch.epoch)) if address in e.claims
    ]
    return {"address": address, "accepted_samples": accepted, "claims": claims, "distributor": platform.distributor}
