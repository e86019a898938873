"""Projects, their task items (with gold answers) and accounts' roles."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from eth_utils import is_address, to_checksum_address
from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlalchemy import and_, func, or_, select
from starlette.background import BackgroundTask

from mindprint.api.deps import AccountDep, DbDep, PlatformDep, SettingsDep, require_role
from mindprint.api.schemas import (
    LabelSchema,
    ProjectCreate,
    ProjectPublic,
    RoleUpdate,
    TaskContent,
    TaskPublic,
    TasksCreate,
    TasksCreated,
)
from mindprint.labeling.store import Account, Assignment, Project, TaskItem, utcnow
from mindprint.platform.service import engine_for

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
        created=project.created,
    )


@router.put("/accounts/{address}/role", dependencies=[require_role("operator")])
def set_role(address: str, body: RoleUpdate, db: DbDep) -> dict[str, str]:
    """Grant a role (operators only)."""
    if not is_address(address):
        raise HTTPException(422, "not an Ethereum address")
    checksum = to_checksum_address(address)
    account = db.get(Account, checksum) or Account(address=checksum)
    account.role = body.role
    db.add(account)
    db.commit()
    return {"address": checksum, "role": body.role}


@router.post(
    "/projects", response_model=ProjectPublic, status_code=201, dependencies=[require_role("requester", "operator")]
)
def create_project(body: ProjectCreate, account: AccountDep, db: DbDep) -> ProjectPublic:
    project = Project(
        owner=account.address,
        name=body.name,
        description=body.description,
        label_schema=body.label_schema.model_dump(),
        redundancy=body.redundancy,
    )
    db.add(project)
    db.commit()
    return _public(project)


@router.get("/projects", response_model=list[ProjectPublic])
def list_projects(account: AccountDep, db: DbDep) -> list[ProjectPublic]:
    return [_public(p) for p in db.scalars(select(Project).order_by(Project.id))]


def _own_project(db: DbDep, project_id: int, account: Account) -> Project:
    project = db.get(Project, project_id)
    if project is None:
        raise HTTPException(404, f"no project {project_id}")
    if account.role != "operator" and project.owner != account.address:
        raise HTTPException(403, "only the project's requester or an operator may change it")
    return project


@router.post(
    "/projects/{project_id}/items",
    response_model=TasksCreated,
    status_code=201,
    dependencies=[require_role("requester", "operator")],
)
def add_items(project_id: ProjectId, body: TasksCreate, account: AccountDep, db: DbDep) -> TasksCreated:
    """Add task items; ``gold`` holds the known answer of gold items (never shown to contributors)."""
    project = _own_project(db, project_id, account)
    schema = LabelSchema(**project.label_schema)
    items = []
    for item in body.items:
        if item.gold is not None and schema.kind == "classes" and item.gold not in schema.classes:
            raise HTTPException(422, f"gold answer {item.gold!r} is not one of {schema.classes}")
        items.append(
            TaskItem(
                project_id=project.id,
                content=item.content.model_dump(),
                gold={"answer": item.gold} if item.gold is not None else None,
            )
        )
    db.add_all(items)
    db.commit()
    return TasksCreated(ids=[i.id for i in items])


@router.get("/tasks/next", response_model=TaskPublic | None, dependencies=[require_role("contributor")])
def next_task(
    account: AccountDep,
    db: DbDep,
    settings: SettingsDep,
    project: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> TaskPublic | None:
    """Lease the next task this contributor has not done and that still needs labels."""
    now = utcnow()
    db.query(Assignment).filter(Assignment.status == "leased", Assignment.lease_expires < now).update(
        {"status": "expired"}
    )
    mine = db.scalar(select(Assignment).where(Assignment.contributor == account.address, Assignment.status == "leased"))
    if mine is not None:
        task = db.get(TaskItem, mine.task_id)
        assert task is not None
        return _task_public(db, task, mine.lease_expires)
    active = (
        select(func.count(Assignment.id))
        .where(
            Assignment.task_id == TaskItem.id,
            or_(Assignment.status == "submitted", and_(Assignment.status == "leased")),
        )
        .scalar_subquery()
    )
    done_before = select(Assignment.task_id).where(Assignment.contributor == account.address)
    query = (
        select(TaskItem)
        .join(Project, Project.id == TaskItem.project_id)
        .where(TaskItem.id.not_in(done_before), active < Project.redundancy)
        .order_by(TaskItem.id)
    )
    if project is not None:
        query = query.where(TaskItem.project_id == project)
    task = db.scalars(query.limit(1)).first()
    if task is None:
        db.commit()
        return None
    expires = now + dt.timedelta(seconds=settings.lease_seconds)
    expired = db.scalar(
        select(Assignment).where(Assignment.task_id == task.id, Assignment.contributor == account.address)
    )
    if expired is not None:
        expired.status, expired.lease_expires = "leased", expires
    else:
        db.add(Assignment(task_id=task.id, contributor=account.address, lease_expires=expires, status="leased"))
    db.commit()
    return _task_public(db, task, expires)


def _task_public(db: DbDep, task: TaskItem, lease: dt.datetime) -> TaskPublic:
    project = db.get(Project, task.project_id)
    assert project is not None
    return TaskPublic(
        id=task.id,
        project_id=task.project_id,
        content=TaskContent(**task.content),
        label_schema=LabelSchema(**project.label_schema),
        lease_expires=lease,
    )


@router.get("/projects/{project_id}/consensus", dependencies=[require_role("requester", "operator")])
def consensus(project_id: ProjectId, account: AccountDep, db: DbDep) -> list[dict[str, object]]:
    """Consensus labels (Dawid–Skene + reputation-weighted vote) of accepted samples."""
    from mindprint.labeling.consensus import aggregate

    _own_project(db, project_id, account)
    return [
        {"task_id": c.task_id, "label": c.label, "confidence": c.confidence, "annotators": c.annotators}
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
    from mindprint.export.bids import ExportError, export_dataset, platform_source, zip_dataset

    _own_project(db, project_id, account)
    db.commit()  # end the read transaction before the long export
    work = Path(tempfile.mkdtemp(prefix="mindprint-export-"))
    try:
        source = platform_source(
            engine_for(settings),
            settings.platform_dir,
            platform.blockstore,
            platform.keys,
            platform.platform_key,
            chain_id=platform.chain_id,
        )
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
