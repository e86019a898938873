"""The labeling web API (FastAPI): app factory and problem+json error handling."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mindprint import __version__
from mindprint.api.limits import RequestGuard, sane_recursion_limit
from mindprint.api.routers import auth, federated, projects, rewards, submissions
from mindprint.core.errors import (
    ConfigurationError,
    Conflict,
    InvalidRequest,
    MindprintError,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    TooLarge,
    TooManyRequests,
)

PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
}
#: domain errors → HTTP status (the one place the mapping lives)
STATUS_OF: list[tuple[type[MindprintError], int]] = [
    (NotAuthenticated, 401),
    (NotPermitted, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
    (TooManyRequests, 429),
    (InvalidRequest, 422),
    (ConfigurationError, 422),
]

__all__ = ["create_app"]


def _problem(
    status: int, title: str, detail: object, request: Request, headers: dict[str, str] | None = None
) -> Response:
    from mindprint.web.pages import error_page

    page = error_page(request, status, title, detail)
    if page is not None:
        return page
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": str(request.url.path),
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def create_app(*, max_body: int | None = None, sign_ins_per_minute: float | None = None) -> FastAPI:
    sane_recursion_limit()
    app = FastAPI(title="mindprint labeling API", version=__version__)
    guard: dict[str, float] = {}
    if max_body:
        guard["max_body"] = max_body
    if sign_ins_per_minute is not None:
        guard["sign_ins_per_minute"] = sign_ins_per_minute
    app.add_middleware(RequestGuard, **guard)  # type: ignore[arg-type]
    app.include_router(auth.router)
    app.include_router(auth.consent_router)
    app.include_router(projects.router)
    app.include_router(submissions.router)
    app.include_router(rewards.router)
    app.include_router(federated.router)

    from mindprint.web.pages import mount

    mount(app)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
        return _problem(
            exc.status_code, TITLES.get(exc.status_code, "Error"), exc.detail, request, getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def validation_problem(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return _problem(422, "Unprocessable Content", errors, request)

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, exc: RecursionError) -> Response:
        return _problem(400, "Bad Request", "input nested too deeply", request)

    @app.exception_handler(MindprintError)
    async def mindprint_problem(request: Request, exc: MindprintError) -> Response:
        status = next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 400)
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if isinstance(exc, TooManyRequests) else None
        return _problem(status, TITLES.get(status, type(exc).__name__), str(exc), request, headers)

    return app
