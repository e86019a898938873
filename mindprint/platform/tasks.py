"""Projects, task items and leases: the labeling rules, independent of HTTP.

A contributor holds at most one lease at a time; a task is offered while fewer than the
project's redundancy ``k`` contributors have it leased or submitted; an expired lease
frees its slot; nobody is offered a task twice. Labels (and gold answers) must fit the
project's label schema.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from mindprint.core.errors import InvalidRequest, NotFound, NotPermitted
from mindprint.labeling.store import Account, Assignment, Project, TaskItem, utcnow
from mindprint.labeling.verification.challenge import issue_challenge

MAX_TEXT_LABEL = 2000

__all__ = ["add_items", "check_label", "create_project", "lease_next", "own_project"]


def check_label(schema: dict[str, Any], label: Any) -> None:
    """Refuse a label the project's label schema does not allow (``InvalidRequest``)."""
    kind = schema.get("kind")
    if kind == "classes":
        classes = schema.get("classes") or []
        if not isinstance(label, str) or label not in classes:
            raise InvalidRequest(f"label {label!r:.80} is not one of the project's classes {classes}")
    elif kind == "rating":
        low, high = int(schema.get("rating_min", 1)), int(schema.get("rating_max", 5))
        if isinstance(label, bool) or not isinstance(label, int) or not low <= label <= high:
            raise InvalidRequest(f"label {label!r:.80} is not a rating in [{low}, {high}]")
    elif kind == "text":
        if not isinstance(label, str) or not 0 < len(label) <= MAX_TEXT_LABEL:
            raise InvalidRequest(f"a text label is 1 to {MAX_TEXT_LABEL} characters")
    else:
        raise InvalidRequest(f"the project has an unknown label schema {kind!r}")


def create_project(
    db: Session,
    owner: str,
    name: str,
    description: str,
    label_schema: dict[str, Any],
    redundancy: int,
    reward_pool: str = "0",
    challenge_cues: int = 0,
) -> Project:
    project = Project(
        owner=owner,
        name=name,
        description=description,
        label_schema=label_schema,
        redundancy=redundancy,
        reward_pool=reward_pool,
        challenge_cues=challenge_cues,
    )
    db.add(project)
    db.commit()
    return project


def own_project(db: Session, project_id: int, account: Account) -> Project:
    """The project, if ``account`` is its requester or an operator."""
    project = db.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project {project_id}")
    if account.role != "operator" and project.owner != account.address:
        raise NotPermitted("only the project's requester or an operator may do this")
    return project


def add_items(db: Session, project: Project, items: Sequence[tuple[dict[str, Any], Any | None]]) -> list[int]:
    """Add ``(content, gold answer or None)`` items; gold answers must fit the label schema."""
    rows = []
    for content, gold in items:
        if gold is not None:
            try:
                check_label(project.label_schema, gold)
            except InvalidRequest as err:
                raise InvalidRequest(f"gold answer: {err}") from err
        rows.append(
            TaskItem(project_id=project.id, content=content, gold={"answer": gold} if gold is not None else None)
        )
    db.add_all(rows)
    db.commit()
    return [row.id for row in rows]


def lease_next(
    db: Session, contributor: str, lease_seconds: int, project: int | None = None
) -> tuple[TaskItem, Project, Assignment] | None:
    """Lease the next task ``contributor`` has not done that still needs labels (or their current
    one); a project with ``challenge_cues`` gives each new lease its own challenge."""
    now = utcnow()
    db.query(Assignment).filter(Assignment.status == "leased", Assignment.lease_expires < now).update(
        {"status": "expired"}
    )
    mine = db.scalar(select(Assignment).where(Assignment.contributor == contributor, Assignment.status == "leased"))
    if mine is not None:
        task = db.get(TaskItem, mine.task_id)
        assert task is not None  # foreign key
        owner = db.get(Project, task.project_id)
        assert owner is not None
        db.commit()
        return task, owner, mine
    active = (
        select(func.count(Assignment.id))
        .where(Assignment.task_id == TaskItem.id, or_(Assignment.status == "submitted", Assignment.status == "leased"))
        .scalar_subquery()
    )
    done_before = select(Assignment.task_id).where(Assignment.contributor == contributor)
    query = (
        select(TaskItem, Project)
        .join(Project, Project.id == TaskItem.project_id)
        .where(TaskItem.id.not_in(done_before), active < Project.redundancy)
        .order_by(TaskItem.id)
    )
    if project is not None:
        query = query.where(TaskItem.project_id == project)
    found = db.execute(query.limit(1)).first()
    if found is None:
        db.commit()
        return None
    task, owner = found
    expires = now + dt.timedelta(seconds=lease_seconds)
    challenge = issue_challenge(owner.challenge_cues) if owner.challenge_cues else None
    lease = Assignment(
        task_id=task.id, contributor=contributor, lease_expires=expires, status="leased", challenge=challenge
    )
    db.add(lease)
    db.commit()
    return task, owner, lease
