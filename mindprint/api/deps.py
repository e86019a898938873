"""FastAPI dependencies: settings, database sessions, the signed-in account."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from mindprint.api.auth import AuthError, read_token
from mindprint.api.settings import ApiSettings, get_settings
from mindprint.labeling.store import Account, make_engine, migrate, sessions

SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


def get_db(settings: SettingsDep) -> Iterator[Session]:
    with sessions(_engine(settings.database_url))() as session:
        yield session


DbDep = Annotated[Session, Depends(get_db)]


def current_account(
    request: Request, settings: SettingsDep, db: DbDep, authorization: str = Header(default="")
) -> Account:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "sign in first: Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
    try:
        address, _role = read_token(settings.token_secret, token)
    except AuthError as err:
        raise HTTPException(401, str(err), headers={"WWW-Authenticate": "Bearer"}) from err
    account = db.get(Account, address)
    if account is None:
        raise HTTPException(401, "unknown account")
    return account


AccountDep = Annotated[Account, Depends(current_account)]


def require_role(*roles: str):
    def check(account: AccountDep) -> Account:
        if account.role not in roles:
            raise HTTPException(403, f"this needs the {' or '.join(roles)} role; you are a {account.role}")
        return account

    return Depends(check)
