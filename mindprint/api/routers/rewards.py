"""API keys for services, reward epochs and contributors' claims, sample metadata."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from mindprint.api.deps import AccountDep, DbDep, PlatformDep, require_role
from mindprint.api.schemas import ERRORS
from mindprint.labeling.store import Project, Submission, TaskItem
from mindprint.platform import accounts, rewards

router = APIRouter(tags=["rewards"])


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: str = Field(pattern="^(requester|operator)$")


@router.post("/api-keys", status_code=201, dependencies=[require_role("operator")], responses=ERRORS)
def create_api_key(body: ApiKeyCreate, db: DbDep) -> dict[str, str]:
    """A key for a service (sent as ``X-API-Key``); shown once, stored as its SHA-256."""
    key, account = accounts.create_api_key(db, body.name, body.role)
    return {"api_key": key, "address": account.address, "role": account.role}


@router.get("/samples/{cid}", responses=ERRORS)
def sample(cid: Annotated[str, PathParam(max_length=120)], account: AccountDep, db: DbDep) -> dict[str, Any]:
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


@router.post("/rewards/epochs", status_code=201, dependencies=[require_role("operator")], responses=ERRORS)
def close_epoch(
    db: DbDep, platform: PlatformDep, pool_wei: Annotated[int, Query(ge=1, le=2**128)] = 10**18
) -> dict[str, Any]:
    """Close a reward epoch: accepted samples since the last one, weighted by quality; root on chain."""
    return rewards.close_epoch(db, platform, pool_wei)


@router.get("/rewards", responses=ERRORS)
def my_rewards(account: AccountDep, db: DbDep, platform: PlatformDep) -> dict[str, Any]:
    """Accepted samples, and a claim (for ``mindprint rewards claim``) per closed epoch."""
    return rewards.rewards_of(db, platform, account.address)
