"""API keys for services, reward epochs and contributors' claims, sample metadata."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Any

from eth_utils import to_checksum_address
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from mindprint.api.deps import AccountDep, DbDep, PlatformDep, require_role
from mindprint.labeling.store import Account, ApiKey, Project, RewardEpoch, Submission, TaskItem, aware, utcnow

router = APIRouter(tags=["rewards"])


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: str = Field(pattern="^(requester|operator)$")


@router.post("/api-keys", status_code=201, dependencies=[require_role("operator")])
def create_api_key(body: ApiKeyCreate, db: DbDep) -> dict[str, str]:
    """A key for a service (sent as ``X-API-Key``); shown once, stored as its SHA-256."""
    key = "mpk_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    address = to_checksum_address("0x" + digest[:40])  # a service account no wallet controls
    db.add(Account(address=address, role=body.role))
    db.flush()
    db.add(ApiKey(digest=digest, name=body.name, address=address))
    db.commit()
    return {"api_key": key, "address": address, "role": body.role}


@router.get("/samples/{cid}")
def sample(cid: str, account: AccountDep, db: DbDep) -> dict[str, Any]:
    """A sample's verdict and metadata: its contributor, the project's requester, operators."""
    row = db.get(Submission, cid)
    task = db.get(TaskItem, row.task_id) if row else None
    project = db.get(Project, task.project_id) if task else None
    allowed = row is not None and (
        account.role == "operator"
        or row.contributor == account.address
        or (project is not None and project.owner == account.address)
    )
    if not allowed or row is None:
        raise HTTPException(404, f"no sample {cid}")
    return {
        "sample_cid": row.cid,
        "task_id": row.task_id,
        "contributor": row.contributor,
        "device": row.device,
        "label": row.label["value"],
        "status": row.status,
        "scores": row.scores,
        "reasons": row.reasons["reasons"],
        "sealed_manifest": row.sealed_manifest,
        "created": row.created.isoformat(),
    }


@router.post("/rewards/epochs", status_code=201, dependencies=[require_role("operator")])
def close_epoch(
    db: DbDep, platform: PlatformDep, pool_wei: Annotated[int, Query(ge=1, le=2**128)] = 10**18
) -> dict[str, Any]:
    """Close a reward epoch: accepted samples since the last one, weighted by quality; root on chain."""
    from mindprint.ledger.rewards import build_epoch, publish_epoch

    last = db.scalar(select(func.max(RewardEpoch.until)))
    query = select(Submission).where(Submission.status == "accepted")
    if last is not None:
        query = query.where(Submission.created > aware(last))
    rows = db.scalars(query).all()
    if not rows:
        raise HTTPException(409, "no accepted samples since the last epoch")
    number = (db.scalar(select(func.max(RewardEpoch.epoch))) or 0) + 1
    epoch = build_epoch(
        number, [(r.contributor, r.scores.get("liveness", 0) * r.scores.get("attention", 0)) for r in rows], pool_wei
    )
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


@router.get("/rewards")
def my_rewards(account: AccountDep, db: DbDep, platform: PlatformDep) -> dict[str, Any]:
    """Accepted samples, and a claim (for ``mindprint rewards claim``) per closed epoch."""
    accepted = db.scalar(
        select(func.count()).where(Submission.contributor == account.address, Submission.status == "accepted")
    )
    claims = [
        e.claims[account.address]
        for e in db.scalars(select(RewardEpoch).order_by(RewardEpoch.epoch))
        if account.address in e.claims
    ]
    return {
        "address": account.address,
        "accepted_samples": accepted,
        "claims": claims,
        "distributor": platform.distributor,
    }
