"""Devices and EEG-bound submissions, verified on arrival."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mindprint.api.deps import AccountDep, DbDep, PlatformDep, require_role
from mindprint.labeling.store import IdempotentRequest, Submission
from mindprint.labeling.submissions import MAX_SAMPLE_BYTES, MAX_SESSION_BYTES, SubmissionRejected, bind_device, submit

router = APIRouter(tags=["submissions"])


class DeviceBind(BaseModel):
    device: str = Field(pattern=r"^(0x)?[0-9a-fA-F]{64}$", description="Ed25519 public key, hex")
    deadline: int = Field(ge=0, description="unix seconds; the signature is void after it")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="EIP-712 BindDevice signature")


class SubmissionCreate(BaseModel):
    sample: str = Field(max_length=MAX_SAMPLE_BYTES * 4 // 3 + 8, description="DAG-CBOR sample block, base64")
    device_signature: str = Field(pattern=r"^(0x)?[0-9a-fA-F]{128}$")
    wallet_signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")
    session_car: str = Field(
        max_length=MAX_SESSION_BYTES * 4 // 3 + 8, description="the session CAR holding the epoch, base64"
    )


class SubmissionPublic(BaseModel):
    sample_cid: str
    task_id: int
    status: str
    scores: dict[str, float]
    reasons: list[str]


@router.post("/devices", status_code=201, dependencies=[require_role("contributor")])
def register_device(body: DeviceBind, account: AccountDep, db: DbDep, platform: PlatformDep) -> dict[str, str]:
    """Bind a device key to the signed-in contributor (EIP-712, as the DeviceRegistry)."""
    try:
        record = bind_device(db, platform, account.address, body.device, body.deadline, body.signature)
    except SubmissionRejected as err:
        raise HTTPException(err.status, str(err)) from err
    return {"device": record.device, "contributor": record.contributor}


@router.post(
    "/submissions",
    response_model=SubmissionPublic,
    status_code=201,
    dependencies=[require_role("contributor")],
    responses={409: {"description": "duplicate or no lease"}, 413: {"description": "too large"}},
)
def create_submission(
    body: SubmissionCreate,
    account: AccountDep,
    db: DbDep,
    platform: PlatformDep,
    idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
) -> Any:
    """Submit a label with its signed EEG sample; it is verified and scored before the answer."""
    key = f"{account.address}:{idempotency_key}" if idempotency_key else None
    if key is not None:
        previous = db.get(IdempotentRequest, key)
        if previous is not None:
            return JSONResponse(previous.response, status_code=previous.status_code)
    try:
        result = submit(db, platform, account.address, body.model_dump())
    except SubmissionRejected as err:
        db.rollback()
        raise HTTPException(err.status, str(err)) from err
    if key is not None:
        db.add(IdempotentRequest(key=key, status_code=201, response=result))
        db.commit()
    return result


@router.get("/submissions/{cid}", response_model=SubmissionPublic)
def get_submission(cid: str, account: AccountDep, db: DbDep) -> SubmissionPublic:
    """A contributor sees only their own submissions; operators see all."""
    row = db.get(Submission, cid)
    if row is None or (account.role != "operator" and row.contributor != account.address):
        raise HTTPException(404, f"no submission {cid}")
    return SubmissionPublic(
        sample_cid=row.cid, task_id=row.task_id, status=row.status, scores=row.scores, reasons=row.reasons["reasons"]
    )


@router.get("/config", tags=["health"])
def platform_config(platform: PlatformDep) -> dict[str, object]:
    """What a companion needs to sign for this platform: chain id and device registry."""
    return {"chain_id": platform.chain_id, "device_registry": platform.registry_address}


@router.get("/samples/{cid}/proof")
def sample_proof(cid: str, account: AccountDep, db: DbDep, platform: PlatformDep) -> dict[str, object]:
    """The sample's Merkle inclusion proof and anchoring transaction."""
    from mindprint.core.errors import LedgerError

    row = db.get(Submission, cid)
    if row is None or (account.role == "contributor" and row.contributor != account.address):
        raise HTTPException(404, f"no sample {cid}")
    if row.status != "accepted":
        raise HTTPException(409, "rejected samples are not anchored")
    if platform.anchorer is None:
        raise HTTPException(409, "this platform runs no anchoring worker")
    try:
        proof = platform.anchorer.proof(cid)
    except LedgerError as err:
        raise HTTPException(409, f"not anchored yet: {err}") from err
    return {
        "sample": proof.sample,
        "root": proof.root,
        "proof": proof.proof,
        "manifest": proof.manifest,
        "tx_hash": proof.tx_hash,
        "block": proof.block,
        "chain_id": proof.chain_id,
        "registry": proof.registry,
        "state": proof.state,
        "verified_offline": proof.verify_offline(),
        "sealed_manifest": row.sealed_manifest,
    }
