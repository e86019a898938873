"""Devices, streamed sessions, and EEG-bound submissions, verified on arrival."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from mindprint.api.deps import AccountDep, DbDep, PlatformDep, require_role
from mindprint.api.schemas import ERRORS
from mindprint.core.errors import TooManyRequests
from mindprint.labeling.store import Project, Submission, TaskItem
from mindprint.labeling.submissions import MAX_SAMPLE_BYTES, bind_device, decode_base64, decode_hex, submit
from mindprint.platform import ingest
from mindprint.platform.service import describe

router = APIRouter(tags=["submissions"])

SessionId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z-]+$")]
Seq = Annotated[int, PathParam(ge=0, le=2**31 - 1)]


class DeviceBind(BaseModel):
    device: str = Field(pattern=r"^(0x)?[0-9a-fA-F]{64}$", description="Ed25519 public key, hex")
    deadline: int = Field(ge=0, le=2**63 - 1, description="unix seconds; the signature is void after it")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="EIP-712 BindDevice signature")


class WrappedKeyBody(BaseModel):
    recipient: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="the platform's X25519 public key, hex")
    ephemeral: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="HPKE encapsulated key, hex")
    nonce: str = Field(default="", max_length=0, description="empty for HPKE")
    ciphertext: str = Field(pattern=r"^[0-9a-fA-F]{96}$", description="the wrapped 32-byte data key + tag, hex")
    scheme: str = Field(pattern=r"^hpke-x25519-sha256-chacha20poly1305$")


class SessionOpen(BaseModel):
    header: str = Field(max_length=ingest.MAX_HEADER_BYTES * 4 // 3 + 8, description="DAG-CBOR header block, base64")
    signature: str = Field(pattern=r"^(0x)?[0-9a-fA-F]{128}$", description="device Ed25519 signature over its CID")
    wrapped_key: WrappedKeyBody


class ChunkUpload(BaseModel):
    cid: str = Field(min_length=8, max_length=120, description="CID of the plaintext chunk block")
    signature: str = Field(pattern=r"^(0x)?[0-9a-fA-F]{128}$", description="device Ed25519 signature over the CID")
    envelope: str = Field(
        max_length=ingest.MAX_CHUNK_BYTES * 4 // 3 + 8, description="the chunk under the session's data key, base64"
    )


class SessionState(BaseModel):
    session: str
    next_seq: int = Field(description="the platform holds seqs 0 … next_seq − 1")
    last_cid: str
    stored: bool | None = None


class SubmissionCreate(BaseModel):
    sample: str = Field(max_length=MAX_SAMPLE_BYTES * 4 // 3 + 8, description="DAG-CBOR sample block, base64")
    device_signature: str = Field(pattern=r"^(0x)?[0-9a-fA-F]{128}$")
    wallet_signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")


class SubmissionPublic(BaseModel):
    sample_cid: str
    task_id: int
    status: str
    scores: dict[str, float]
    reasons: list[str]


@router.post("/devices", status_code=201, dependencies=[require_role("contributor")], responses=ERRORS)
def register_device(body: DeviceBind, account: AccountDep, db: DbDep, platform: PlatformDep) -> dict[str, str]:
    """Bind a device key to the signed-in contributor (EIP-712, as the DeviceRegistry)."""
    record = bind_device(db, platform, account.address, body.device, body.deadline, body.signature)
    return {"device": record.device, "contributor": record.contributor}


@router.post(
    "/sessions",
    response_model=SessionState,
    status_code=201,
    dependencies=[require_role("contributor")],
    responses=ERRORS,
)
def open_session(body: SessionOpen, account: AccountDep, db: DbDep, platform: PlatformDep) -> Any:
    """Open a streamed session: its signed header and its data key, HPKE-wrapped for the platform."""
    header = decode_base64(body.header, "header", ingest.MAX_HEADER_BYTES)
    return ingest.open_session(
        db, platform, account.address, header, decode_hex(body.signature, "signature"), body.wrapped_key.model_dump()
    )


@router.get("/sessions/{session}", response_model=SessionState, responses=ERRORS)
def session_state(session: SessionId, account: AccountDep, db: DbDep) -> Any:
    """Where an upload resumes: the platform holds seqs 0 … next_seq − 1."""
    return ingest.get_session(db, account.address, session)


@router.put(
    "/sessions/{session}/chunks/{seq}",
    response_model=SessionState,
    dependencies=[require_role("contributor")],
    responses=ERRORS,
)
def upload_chunk(
    session: SessionId, seq: Seq, body: ChunkUpload, account: AccountDep, db: DbDep, platform: PlatformDep
) -> Any:
    """Send one encrypted chunk; verified once and stored once (idempotent per seq)."""
    envelope = decode_base64(body.envelope, "envelope", ingest.MAX_CHUNK_BYTES)
    return ingest.put_chunk(
        db, platform, account.address, session, seq, body.cid, decode_hex(body.signature, "signature"), envelope
    )


@router.post(
    "/submissions",
    response_model=SubmissionPublic,
    status_code=201,
    dependencies=[require_role("contributor")],
    responses=ERRORS,
)
def create_submission(
    body: SubmissionCreate,
    account: AccountDep,
    db: DbDep,
    platform: PlatformDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=100, pattern=r"^[\x21-\x7e]+$")] = None,
) -> Any:
    """Submit a label with its signed sample citing streamed chunks; verified and scored before the answer."""
    wait = platform.submission_limits.take(account.address)
    if wait:
        raise TooManyRequests(f"too many submissions; retry in {wait:.0f} s", wait)
    timings: dict[str, float] = {}
    result = submit(db, platform, account.address, body.model_dump(), idempotency_key=idempotency_key, timings=timings)
    response.headers["Server-Timing"] = ", ".join(f"{step};dur={1000 * s:.2f}" for step, s in timings.items())
    return result


class SubmissionListed(SubmissionPublic):
    label: Any = None
    created: str


@router.get("/submissions", response_model=list[SubmissionListed], responses=ERRORS)
def list_submissions(
    account: AccountDep,
    db: DbDep,
    before: Annotated[str | None, Query(max_length=40, description="created time of the last row seen")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[SubmissionListed]:
    """Your own submissions, newest first (keyset paging with ``before``)."""
    import datetime as dt

    from sqlalchemy import select

    query = (
        select(Submission)
        .where(Submission.contributor == account.address)
        .order_by(Submission.created.desc())
        .limit(limit)
    )
    if before:
        try:
            query = query.where(Submission.created < dt.datetime.fromisoformat(before))
        except ValueError as err:
            raise HTTPException(422, "before must be an ISO 8601 time") from err
    return [
        SubmissionListed(
            sample_cid=row.cid,
            task_id=row.task_id,
            status=row.status,
            scores=row.scores,
            reasons=row.reasons["reasons"],
            label=row.label.get("value"),
            created=row.created.isoformat(),
        )
        for row in db.scalars(query)
    ]


@router.get("/submissions/{cid}", response_model=SubmissionPublic, responses=ERRORS)
def get_submission(cid: Annotated[str, PathParam(max_length=120)], account: AccountDep, db: DbDep) -> SubmissionPublic:
    """A contributor sees only their own submissions; operators see all."""
    row = db.get(Submission, cid)
    if row is None or (account.role != "operator" and row.contributor != account.address):
        raise HTTPException(404, f"no submission {cid}")
    return SubmissionPublic(
        sample_cid=row.cid, task_id=row.task_id, status=row.status, scores=row.scores, reasons=row.reasons["reasons"]
    )


@router.get("/config", tags=["health"])
def platform_config(platform: PlatformDep) -> dict[str, object]:
    """What a companion needs: chain id, device registry, the platform's public key for HPKE."""
    return describe(platform)


def _may_read(db: Any, account: Any, row: Submission) -> bool:
    """Operators read every sample; contributors their own; requesters those of their projects."""
    if account.role == "operator":
        return True
    if account.role == "requester":
        task = db.get(TaskItem, row.task_id)
        project = db.get(Project, task.project_id) if task is not None else None
        return project is not None and project.owner == account.address
    return bool(row.contributor == account.address)


@router.get("/samples/{cid}/proof", responses=ERRORS)
def sample_proof(
    cid: Annotated[str, PathParam(max_length=120)], account: AccountDep, db: DbDep, platform: PlatformDep
) -> dict[str, object]:
    """The sample's Merkle inclusion proof and anchoring transaction."""
    from mindprint.core.errors import LedgerError

    row = db.get(Submission, cid)
    if row is None or not _may_read(db, account, row):
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
