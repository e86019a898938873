"""The web app's pages: server-rendered (Jinja2), enhanced with htmx and uPlot, all assets
shipped in the package (no CDN: the platform works offline).

Signing in is Sign-In with Ethereum through the browser's EIP-1193 wallet; the bearer
token it earns is kept in an HttpOnly, SameSite=Strict cookie that the same REST API
accepts (state-changing calls must also send ``X-Requested-With: mindprint``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mindprint import __version__
from mindprint.api.deps import SESSION_COOKIE, DbDep, PlatformDep, SettingsDep, current_account
from mindprint.api.routers.auth import verify
from mindprint.api.schemas import VerifyRequest
from mindprint.labeling.store import Account, ExportJob, LabelOverride, Project, Submission, TaskItem, aware, utcnow
from mindprint.platform import tasks
from mindprint.platform.service import platform_for
from mindprint.web import views

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["short"] = lambda cid: f"{cid[:10]}…{cid[-6:]}" if isinstance(cid, str) and len(cid) > 20 else cid
templates.env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.0f} %"
templates.env.filters["num"] = lambda x, d=2: "–" if x is None else f"{x:.{d}f}"
templates.env.globals["version"] = __version__

router = APIRouter(prefix="/ui", include_in_schema=False)

ProjectId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


class SignInRequired(Exception):
    """Raised by page routes without a session: answered with a redirect to the sign-in page."""


def page_account(request: Request, settings: SettingsDep, db: DbDep, platform: PlatformDep) -> Account:
    try:
        return current_account(request, settings, db, platform, authorization="", x_api_key="")
    except HTTPException as err:
        if err.status_code == 401:
            raise SignInRequired from err
        raise


PageAccount = Annotated[Account, Depends(page_account)]


def _needs(account: Account, *roles: str) -> None:
    if account.role not in roles:
        raise HTTPException(403, f"this page needs the {' or '.join(roles)} role; you are a {account.role}")


def _page(request: Request, name: str, account: Account | None, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"account": account, **context})


def _key(settings: Any) -> bytes:
    return platform_for(settings).pseudonym_key


# ---------------------------------------------------------------------------- sign-in
@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def home(account: PageAccount) -> RedirectResponse:
    return RedirectResponse("/ui/explorer" if account.role == "contributor" else "/ui/projects", status_code=303)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, next: str = "/ui/") -> HTMLResponse:
    target = next if next.startswith("/ui") else "/ui/"
    return _page(request, "signin.html", None, next=target)


@router.post("/session")
def open_session(
    body: VerifyRequest, request: Request, settings: SettingsDep, db: DbDep, platform: PlatformDep
) -> JSONResponse:
    """Check a SIWE signature (as ``POST /auth/verify``) and keep the token in the session cookie."""
    token = verify(body, settings, db, platform)
    response = JSONResponse({"address": token.address, "role": token.role, "expires_in": token.expires_in})
    response.set_cookie(
        SESSION_COOKIE,
        token.access_token,
        max_age=token.expires_in,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/signout")
def close_session() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -------------------------------------------------------------------------- requester
@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request, account: PageAccount, db: DbDep) -> HTMLResponse:
    _needs(account, "requester", "operator")
    return _page(request, "projects.html", account, projects=views.visible_projects(db, account))


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(request: Request, project_id: ProjectId, account: PageAccount, db: DbDep) -> HTMLResponse:
    project = tasks.own_project(db, project_id, account)
    jobs = list(
        db.scalars(select(ExportJob).where(ExportJob.project_id == project.id).order_by(ExportJob.id.desc()).limit(5))
    )
    return _page(request, "project.html", account, project=project, progress=views.progress(db, project), jobs=jobs)


@router.get("/projects/{project_id}/agreement", response_class=HTMLResponse)
def agreement_page(
    request: Request, project_id: ProjectId, account: PageAccount, db: DbDep, settings: SettingsDep
) -> HTMLResponse:
    project = tasks.own_project(db, project_id, account)
    result, fresh = views.agreement(db, project, _key(settings))
    return _page(request, "agreement.html", account, project=project, agreement=result, fresh=fresh)


@router.get("/projects/{project_id}/review", response_class=HTMLResponse)
def review_page(
    request: Request,
    project_id: ProjectId,
    account: PageAccount,
    db: DbDep,
    settings: SettingsDep,
    page: Annotated[int, Query(ge=0, le=10**6)] = 0,
) -> HTMLResponse:
    project = tasks.own_project(db, project_id, account)
    queue = views.review_queue(db, project, _key(settings), page=page)
    return _page(request, "review.html", account, project=project, queue=queue, page=page, size=views.PAGE)


async def _form(request: Request) -> dict[str, str]:
    """A url-encoded form (htmx posts these), small."""
    body = await request.body()
    if len(body) > 10_000:
        raise HTTPException(413, "form too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


@router.post("/projects/{project_id}/overrides", response_class=HTMLResponse)
async def override_label(request: Request, project_id: ProjectId, account: PageAccount, db: DbDep) -> HTMLResponse:
    """Set (or clear, with an empty label) the reviewer's label of one item."""
    project = tasks.own_project(db, project_id, account)
    form = await _form(request)
    try:
        task_id = int(form.get("task", ""))
    except ValueError as err:
        raise HTTPException(422, "task must be an item id") from err
    task = db.get(TaskItem, task_id)
    if task is None or task.project_id != project.id:
        raise HTTPException(404, f"no item {task_id} in project {project.id}")
    label = form.get("label", "").strip()
    existing = db.get(LabelOverride, task_id)
    if not label:
        if existing is not None:
            db.delete(existing)
    else:
        from mindprint.platform.tasks import check_label

        check_label(project.label_schema, label)
        if existing is None:
            db.add(LabelOverride(task_id=task_id, label=label, reviewer=account.address, note=form.get("note", "")))
        else:
            existing.label, existing.reviewer, existing.created = label, account.address, utcnow()
    db.commit()
    return _page(request, "_override.html", account, project=project, task_id=task_id, override=label or None)


@router.post("/projects/{project_id}/exports", response_class=HTMLResponse)
async def start_export(
    request: Request,
    project_id: ProjectId,
    account: PageAccount,
    db: DbDep,
    settings: SettingsDep,
    platform: PlatformDep,
) -> HTMLResponse:
    from mindprint.web.exports import start_export as start

    project = tasks.own_project(db, project_id, account)
    fmt = (await _form(request)).get("format", "EDF")
    if fmt not in {"EDF", "BrainVision"}:
        raise HTTPException(422, "format must be EDF or BrainVision")
    from mindprint.platform.runners import runner_id

    job = ExportJob(project_id=project.id, requester=account.address, format=fmt, state="queued", runner=runner_id())
    db.add(job)
    db.commit()
    assert platform.engine is not None
    start(platform.engine, platform, settings, job)
    return _page(request, "_export.html", account, job=job)


def _own_job(db: Any, job_id: int, account: Account) -> ExportJob:
    job = db.get(ExportJob, job_id)
    if job is None or (account.role != "operator" and job.requester != account.address):
        raise HTTPException(404, f"no export job {job_id}")
    return job


@router.get("/exports/{job_id}", response_class=HTMLResponse)
def export_state(
    request: Request, job_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], account: PageAccount, db: DbDep
) -> HTMLResponse:
    return _page(request, "_export.html", account, job=_own_job(db, job_id, account))


@router.get("/exports/{job_id}/download")
def export_download(
    job_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], account: PageAccount, db: DbDep
) -> FileResponse:
    job = _own_job(db, job_id, account)
    if job.state != "done" or not job.path or not Path(job.path).exists():
        raise HTTPException(409, f"export job {job_id} is {job.state}, not ready")
    return FileResponse(job.path, media_type="application/zip", filename=f"project-{job.project_id}-bids.zip")


# ------------------------------------------------------------------------- explorer
@router.get("/explorer", response_class=HTMLResponse)
def explorer_page(
    request: Request,
    account: PageAccount,
    db: DbDep,
    settings: SettingsDep,
    project: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    contributor: Annotated[str | None, Query(max_length=20)] = None,
    verdict: Annotated[str | None, Query(pattern=r"^(accepted|rejected)?$")] = None,
    min_liveness: Annotated[float | None, Query(ge=0, le=1)] = None,
    before: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:
    filters = views.Filters(project, contributor or None, verdict or None, min_liveness, before)
    found = views.explore(db, account, _key(settings), filters)
    projects = views.visible_projects(db, account) if account.role != "contributor" else []
    query = "&".join(f"{k}={quote(str(v))}" for k, v in asdict(filters).items() if v is not None and k != "before")
    return _page(request, "explorer.html", account, found=found, filters=filters, projects=projects, query=query)


def _readable(db: Any, account: Account, cid: str) -> Submission:
    from mindprint.api.routers.submissions import _may_read

    row = db.get(Submission, cid)
    if row is None or not _may_read(db, account, row):
        raise HTTPException(404, f"no sample {cid}")
    return row


def _may_see_eeg(db: Any, account: Account, row: Submission) -> bool:
    """EEG is shown as exports share it: a requester sees it only where the contributor
    consented to research use; the contributor and operators always."""
    if account.role == "operator" or row.contributor == account.address:
        return True
    contributor = db.get(Account, row.contributor)
    return bool(contributor is not None and contributor.consent)


@router.get("/samples/{cid}", response_class=HTMLResponse)
def sample_page(
    request: Request,
    cid: Annotated[str, PathParam(max_length=120)],
    account: PageAccount,
    db: DbDep,
    settings: SettingsDep,
    platform: PlatformDep,
) -> HTMLResponse:
    row = _readable(db, account, cid)
    task = db.get(TaskItem, row.task_id)
    assert task is not None
    project = db.get(Project, task.project_id)
    consensus = None
    if project is not None and account.role != "contributor":
        override = db.get(LabelOverride, task.id)
        if override is not None:
            consensus = {"label": override.label, "source": "reviewer"}
        else:
            agreed, _ = views.agreement(db, project, _key(settings))
            item = next((i for i in agreed["items"] if i["task"] == task.id), None) if agreed else None
            if item is not None:
                consensus = {"label": item["consensus"], "source": "Dawid–Skene + weighted vote"}
    proof, proof_error = None, None
    if row.status == "accepted" and platform.anchorer is not None:
        try:
            proof = platform.anchorer.proof(cid)
        except Exception as err:  # not anchored yet
            proof_error = str(err)
    return _page(
        request,
        "sample.html",
        account,
        row=row,
        task=task,
        project=project,
        pseudonym=views.pseudonym(_key(settings), row.contributor),
        consensus=consensus,
        proof=proof,
        proof_ok=proof.verify_offline() if proof is not None else None,
        proof_error=proof_error,
        created=aware(row.created),
        eeg=_may_see_eeg(db, account, row),
    )


@router.get("/samples/{cid}/epoch")
def sample_epoch(
    cid: Annotated[str, PathParam(max_length=120)], account: PageAccount, db: DbDep, platform: PlatformDep
) -> dict[str, Any]:
    """The sample's epoch, PSD and channel quality as JSON, for the plots."""
    row = _readable(db, account, cid)
    if not _may_see_eeg(db, account, row):
        raise HTTPException(403, "the contributor has not consented to share their EEG")
    with _epochs_lock:
        cached = _epochs.get(cid)
    if cached is not None:
        return cached
    try:
        payload = views.epoch_payload(db, platform, row)
    except LookupError as err:
        raise HTTPException(409, str(err)) from err
    with _epochs_lock:
        _epochs[cid] = payload
        while len(_epochs) > 256:  # a sample's epoch never changes: keep the recent ones
            _epochs.pop(next(iter(_epochs)))
    return payload


_epochs: dict[str, dict[str, Any]] = {}
_epochs_lock = threading.Lock()


# ------------------------------------------------------------------------- operator
@router.get("/operator", response_class=HTMLResponse)
def operator_page(
    request: Request, account: PageAccount, db: DbDep, settings: SettingsDep, platform: PlatformDep
) -> HTMLResponse:
    _needs(account, "operator")
    return _page(request, "operator.html", account, status=views.operator_status(db, platform, settings))


def error_page(request: Request, status: int, title: str, detail: object) -> HTMLResponse | None:
    """An HTML error page for a browser navigating the app (API clients keep problem+json)."""
    path = request.url.path
    if not path.startswith("/ui") or "text/html" not in request.headers.get("accept", ""):
        return None
    if request.headers.get("hx-request"):  # an htmx swap shows the detail in place
        return HTMLResponse(f'<span class="error">{status}: {escape(str(detail))}</span>', status_code=status)
    return templates.TemplateResponse(
        request, "error.html", {"account": None, "status": status, "title": title, "detail": detail}, status_code=status
    )


def mount(app: FastAPI) -> None:
    """Add the pages, the static assets and the sign-in redirect to ``app``."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> RedirectResponse:
        return RedirectResponse(f"/ui/signin?next={quote(request.url.path)}", status_code=303)

    app.add_middleware(PageHeaders)


class PageHeaders:
    """Server-Timing and the pages' Content-Security-Policy on the pages' responses. The
    pages' policy replaces the API's (:mod:`mindprint.api.limits`), which forbids inline
    style attributes — the agreement table's heat map is one (until 2026-12-04 the API's
    policy won and the heat map stayed blank). A pure ASGI middleware: every other request
    passes straight through (Starlette's ``@app.middleware`` put each API request through a
    task and memory streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/ui") or path.startswith("/ui/static"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Server-Timing"] = f"app;dur={1000 * (time.perf_counter() - start):.2f}"
                headers["Content-Security-Policy"] = CSP
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: pages load only their own scripts (no inline JS, no third-party origin)
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "frame-ancestors 'none'"
)
