"""FastAPI dependencies: settings, database sessions, the signed-in account."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session

from mindprint.api.auth import AuthError, read_token
from mindprint.api.settings import ApiSettings, get_settings
from mindprint.labeling.store import Account, sessions
from mindprint.platform.service import Platform, engine_for, platform_for

#: the web app keeps the bearer token in this cookie (HttpOnly, SameSite=Strict)
SESSION_COOKIE = "mindprint_session"


async def app_settings(request: Request) -> ApiSettings:
    """The app's settings: ``app.state.settings`` when the app was given some (``start_platform``,
    the tests), else the environment's. Not a ``dependency_overrides`` entry: with any override
    set, FastAPI re-analyses every dependency's signature on every request (13 % of a
    submission's server time when measured). ``async``, like the other dependencies that do
    no I/O: FastAPI runs a sync dependency on a worker thread, one thread hop each."""
    settings = getattr(request.app.state, "settings", None)
    return settings if settings is not None else get_settings()


SettingsDep = Annotated[ApiSettings, Depends(app_settings)]


async def get_platform(settings: SettingsDep) -> Platform:
    """The platform of these settings (built once per process by :func:`platform_for`)."""
    return platform_for(settings)


PlatformDep = Annotated[Platform, Depends(get_platform)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    with sessions(engine_for(settings))() as session:
        yield session


DbDep = Annotated[Session, Depends(get_db)]


def current_account(
    request: Request,
    settings: SettingsDep,
    db: DbDep,
    platform: PlatformDep,
    authorization: str = Header(default=""),
    x_api_key: str = Header(default=""),
) -> Account:
    """The bearer token's account, or the service account of an ``X-API-Key``."""
    if x_api_key:
        import hashlib

        from mindprint.labeling.store import ApiKey

        record = db.get(ApiKey, hashlib.sha256(x_api_key.encode()).hexdigest())
        service = db.get(Account, record.address) if record else None
        if service is None:
            raise HTTPException(401, "unknown API key")
        db.commit()
        return service
    scheme, _, token = authorization.partition(" ")
    if not authorization and request.cookies.get(SESSION_COOKIE):
        # the web app's session: an HttpOnly, SameSite=Strict cookie holding the same token;
        # a state-changing call must also carry X-Requested-With, which no cross-site form
        # can send (a cross-origin script would need a CORS preflight this API never grants)
        if request.method not in {"GET", "HEAD", "OPTIONS"} and request.headers.get("x-requested-with") != "mindprint":
            raise HTTPException(403, "a browser session's request must carry X-Requested-With: mindprint")
        scheme, token = "bearer", request.cookies[SESSION_COOKIE]
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "sign in first: Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
    try:
        address, _role = read_token(platform.token_secret, token)
    except AuthError as err:
        raise HTTPException(401, str(err), headers={"WWW-Authenticate": "Bearer"}) from err
    account = db.get(Account, address)
    if account is None:
        raise HTTPException(401, "unknown account")
    # end the read transaction: the connection goes back to the pool instead of being held
    # while the request waits for a worker thread (128 concurrent uploads exhausted the pool)
    db.commit()
    return account


AccountDep = Annotated[Account, Depends(current_account)]


def require_role(*roles: str):
    async def check(account: AccountDep) -> Account:
        if account.role not in roles:
            raise HTTPException(403, f"this needs the {' or '.join(roles)} role; you are a {account.role}")
        return account

    return Depends(check)
