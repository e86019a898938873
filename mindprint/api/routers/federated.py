"""Federated rounds: the operator publishes a round; companions train and send masked updates."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from mindprint.api.deps import AccountDep, DbDep, PlatformDep, require_role
from mindprint.api.schemas import ERRORS
from mindprint.federated.training import TrainParams
from mindprint.platform import federated

router = APIRouter(tags=["federated"], prefix="/federated")

RoundId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


class RoundCreate(BaseModel):
    local_epochs: int = Field(1, ge=1, le=50)
    batch_size: int = Field(8, ge=1, le=4096)
    lr: float = Field(0.5, gt=0, le=10)
    clip: float = Field(1.0, gt=0, le=100)
    noise_multiplier: float = Field(3.0, ge=0, le=100)
    delta: float = Field(1e-5, gt=0, lt=1)
    epsilon_budget: float = Field(8.0, gt=0, le=100)
    min_clients: int = Field(3, ge=2, le=2000)
    max_clients: int = Field(1000, ge=2, le=2000)
    phase_seconds: float = Field(60.0, ge=1, le=3600)
    model_cid: str | None = Field(None, max_length=120)


@router.post("/rounds", status_code=201, dependencies=[require_role("operator")], responses=ERRORS)
def start_round(body: RoundCreate, db: DbDep, platform: PlatformDep) -> dict[str, Any]:
    """Publish a round: the model (by CID) every client starts from, its parameters and privacy budget."""
    params = TrainParams(body.local_epochs, body.batch_size, body.lr, body.clip, body.noise_multiplier, body.delta)
    rnd = federated.start_round(
        db,
        platform,
        params,
        epsilon_budget=body.epsilon_budget,
        min_clients=body.min_clients,
        max_clients=body.max_clients,
        phase_seconds=body.phase_seconds,
        model_cid=body.model_cid,
    )
    return federated.round_state(db, platform, rnd.id)


@router.get("/rounds/latest", responses=ERRORS)
def latest_round(account: AccountDep, db: DbDep, platform: PlatformDep) -> dict[str, Any]:
    """The newest round (a companion's way to find the one to join)."""
    return federated.round_state(db, platform, None, account.address)


@router.get("/rounds/{round_id}", responses=ERRORS)
def get_round(round_id: RoundId, account: AccountDep, db: DbDep, platform: PlatformDep) -> dict[str, Any]:
    """A round's step, client sets and, for the step at hand, the keys or the shares addressed to you."""
    return federated.round_state(db, platform, round_id, account.address)


class StepMessage(BaseModel):
    c_pk: str | None = Field(None, max_length=64)
    s_pk: str | None = Field(None, max_length=64)
    shares: dict[str, str] | None = Field(None, max_length=2000)
    vector: str | None = Field(None, max_length=2_000_000)
    reveals: dict[str, list[str]] | None = Field(None, max_length=2000)


@router.post("/rounds/{round_id}/{step}", responses=ERRORS)
def send(
    round_id: RoundId,
    step: Literal["keys", "shares", "masked", "unmask"],
    body: StepMessage,
    account: AccountDep,
    db: DbDep,
    platform: PlatformDep,
) -> dict[str, Any]:
    """A client's message for one step of secure aggregation (idempotent)."""
    return federated.submit(db, platform, round_id, step, account.address, body.model_dump(exclude_none=True))


@router.get("/models/{cid}", responses=ERRORS)
def get_model(
    cid: Annotated[str, PathParam(max_length=120)], account: AccountDep, platform: PlatformDep
) -> dict[str, str]:
    """A model block (DAG-CBOR, base64) by its CID: what a round trains and what companions run."""
    return {"cid": cid, "block": base64.b64encode(federated.model_block(platform, cid)).decode()}


@router.get("/models", responses=ERRORS)
def current(account: AccountDep, db: DbDep, platform: PlatformDep) -> dict[str, str]:
    """The CID of the current model (the newest round's result)."""
    return {"cid": federated.current_model(db, platform)}
