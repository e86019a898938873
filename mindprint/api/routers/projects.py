"""Projects, their task items (with gold answers) and accounts' roles."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlalchemy import select
from starlette.background import BackgroundTask

from mindprint.api.deps import AccountDep, DbDep, PlatformDep, SettingsDep, require_role
from mindprint.api.schemas import (
    ERRORS,
    Challenge,
    LabelSchema,
    ProjectCreate,
    ProjectPublic,
    RoleUpdate,
    TaskContent,
    TaskPublic,
    TasksCreate,
    TasksCreated,
)
from mindprint.labeling.store import Project, aware
from mindprint.labeling.worker import enqueue_once
from mindprint.platform import accounts, tasks

router = APIRouter(tags=["projects"])

#: database ids are 32-bit on PostgreSQL; larger values cannot name a project
ProjectId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


def _public(project: Project) -> ProjectPublic:
    return ProjectPublic(
        id=project.id,
        owner=project.owner,
        name=project.name,
        description=project.description,
        label_schema=LabelSchema(**project.label_schema),
        redundancy=project.redundancy,
        reward_pool=project.reward_pool or "0",
        challenge_cues=project.challenge_cues or 0,
        created=aware(project.created),
    )


@router.put("/accounts/{address}/role", dependencies=[require_role("operator")], responses=ERRORS)
def set_role(address: Annotated[str, PathParam(max_length=42)], body: RoleUpdate, db: DbDep) -> dict[str, str]:
    """Grant a role (operators only)."""
    account = accounts.set_role(db, address, body.role)
    return {"address": account.address, "role": account.role}


@router.post(
    "/projects",
    response_model=ProjectPublic,
    status_code=201,
    dependencies=[require_role("requester", "operator")],
    responses=ERRORS,
)
def create_project(body: ProjectCreate, account: AccountDep, db: DbDep) -> ProjectPublic:
    project = tasks.create_project(
        db,
        account.address,
        body.name,
        body.description,
        body.label_schema.model_dump(),
        body.redundancy,
        body.reward_pool,
        body.challenge_cues,
    )
    return _public(project)


@router.get("/projects", response_model=list[ProjectPublic], responses=ERRORS)
def list_projects(account: AccountDep, db: DbDep) -> list[ProjectPublic]:
    return [_public(p) for p in db.scalars(select(Project).order_by(Project.id))]


@router.post(
    "/projects/{project_id}/items",
    response_model=TasksCreated,
    status_code=201,
    dependencies=[require_role("requester", "operator")],
    responses=ERRORS,
)
def add_items(project_id: ProjectId, body: TasksCreate, account: AccountDep, db: DbDep) -> TasksCreated:
    """Add task items; ``gold`` holds the known answer of gold items (never shown to contributors)."""
    project = tasks.own_project(db, project_id, account)
    ids = tasks.add_items(db, project, [(item.content.model_dump(), item.gold) for item in body.items])
    return TasksCreated(ids=ids)


@router.get(
    "/tasks/next", response_model=TaskPublic | None, dependencies=[require_role("contributor")], responses=ERRORS
)
def next_task(
    account: AccountDep,
    db: DbDep,
    settings: SettingsDep,
    project: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> TaskPublic | None:
    """Lease the next task this contributor has not done and that still needs labels."""
    leased = tasks.lease_next(db, account.address, settings.lease_seconds, project)
    if leased is None:
        return None
    task, owner, lease = leased
    return TaskPublic(
        id=task.id,
        project_id=task.project_id,
        content=TaskContent(**task.content),
        label_schema=LabelSchema(**owner.label_schema),
        lease_expires=aware(lease.lease_expires),
        challenge=Challenge(**lease.challenge) if lease.challenge else None,
    )


@router.get("/projects/{project_id}/consensus", dependencies=[require_role("requester", "operator")])
def consensus(project_id: ProjectId, account: AccountDep, db: DbDep) -> list[dict[str, object]]:
    """Consensus labels (Dawid–Skene + reputation-weighted vote) of accepted samples; a reviewer's
    override (set in the web console) replaces ``label`` and sets ``reviewed``."""
    from mindprint.labeling.consensus import aggregate
    from mindprint.labeling.store import LabelOverride, TaskItem

    tasks.own_project(db, project_id, account)
    overrides = dict(
        db.execute(
            select(LabelOverride.task_id, LabelOverride.label)
            .join(TaskItem, TaskItem.id == LabelOverride.task_id)
            .where(TaskItem.project_id == project_id)
        ).all()
    )
    return [
        {
            "task_id": c.task_id,
            "label": overrides.get(c.task_id, c.label),
            "computed": c.label,
            "reviewed": c.task_id in overrides,
            "confidence": c.confidence,
            "annotators": c.annotators,
        }
        for c in aggregate(db, project_id)
    ]


@router.get(
    "/projects/{project_id}/export",
    dependencies=[require_role("requester", "operator")],
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "the BIDS dataset, zipped"}},
)
def export_project(
    project_id: ProjectId,
    account: AccountDep,
    db: DbDep,
    settings: SettingsDep,
    platform: PlatformDep,
    data_format: Annotated[Literal["EDF", "BrainVision"], Query(alias="format")] = "EDF",
) -> FileResponse:
    """The project's accepted, consented, anchored samples as a BIDS-EEG dataset (zip).

    Same content as `mindprint export --project ID`; check it with `mindprint verify`.
    """
    from mindprint.core.errors import ConfigurationError, LedgerError
    from mindprint.export.bids import ExportError, export_dataset, zip_dataset
    from mindprint.platform.service import export_source

    tasks.own_project(db, project_id, account)
    db.commit()  # end the read transaction before the long export
    work = Path(tempfile.mkdtemp(prefix="mindprint-export-"))
    try:
        source = export_source(platform, settings)
        export_dataset(source, work / "dataset", projects=[project_id], fmt=data_format)
        archive = zip_dataset(work / "dataset", work / f"project-{project_id}-bids.zip")
    except (ExportError, ConfigurationError, LedgerError) as err:  # nothing anchored or exportable yet
        shutil.rmtree(work, ignore_errors=True)
        raise HTTPException(409, str(err)) from err
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=archive.name,
        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True),
    )


IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
MAX_IMAGE_BYTES = 2 * 2**20


@router.post(
    "/projects/{project_id}/images",
    status_code=201,
    dependencies=[require_role("requester", "operator")],
    responses=ERRORS,
    openapi_extra={
        "requestBody": {"content": {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES}}
    },
)
async def upload_image(
    project_id: ProjectId, request: Request, account: AccountDep, db: DbDep, platform: PlatformDep
) -> dict[str, str]:
    """Store a stimulus image (raw body, ≤ 2 MiB); returns its CID for items' ``image_cid``.

    The image is a raw block in the platform's blockstore, pinned with the samples that use it.
    """
    from mindprint.core.ipld import cid_text

    tasks.own_project(db, project_id, account)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in IMAGE_TYPES:
        raise HTTPException(415, f"an image must be one of {sorted(IMAGE_TYPES)}, got {kind or 'no content type'}")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_IMAGE_BYTES:
            raise HTTPException(413, f"an image may hold at most {MAX_IMAGE_BYTES} bytes")
    if not body:
        raise HTTPException(422, "empty image")
    cid = platform.blockstore.put(bytes(body))
    platform.blockstore.pin(cid)
    text = cid_text(cid)
    enqueue_once(db, "pin", text)  # to the IPFS node too, when the worker has one
    db.commit()
    return {"cid": text, "content_type": kind}


@router.get(
    "/images/{cid}",
    response_class=Response,
    responses={200: {"content": {t: {} for t in IMAGE_TYPES}, "description": "the image"}, **ERRORS},
)
def get_image(cid: Annotated[str, PathParam(max_length=120)], account: AccountDep, platform: PlatformDep) -> Response:
    """A stimulus image by CID, for anyone signed in (contributors are shown it)."""
    from mindprint.core.errors import NotFound

    try:
        data = platform.blockstore.get(cid)
    except Exception as err:  # a malformed or unknown CID
        raise NotFound(f"no image {cid}") from err
    kind = next((t for t, magic in _MAGIC.items() if data.startswith(magic)), None)
    if kind is None:
        raise NotFound(f"{cid} is not an image")
    return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=31536000, immutable"})


_MAGIC = {"image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8\xff", "image/gif": b"GIF8", "image/webp": b"RIFF"}
