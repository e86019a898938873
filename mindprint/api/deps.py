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
from mindprint.labeling.submissions import Platform

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
    request: Request,
    settings: SettingsDep,
    db: DbDep,
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
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "sign in first: Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
    try:
        address, _role = read_token(settings.token_secret, token)
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
    def check(account: AccountDep) -> Account:
        if account.role not in roles:
            raise HTTPException(403, f"this needs the {' or '.join(roles)} role; you are a {account.role}")
        return account

    return Depends(check)


_platforms: dict[str, Platform] = {}


def get_platform(settings: SettingsDep) -> Platform:
    """Verification state for this data directory (created once per process)."""

    from mindprint.core.secret_files import load_or_create_secret
    from mindprint.labeling.verification.model import load_default_model
    from mindprint.labeling.verification.uniqueness import FingerprintStore
    from mindprint.ledger.blockstore import Blockstore
    from mindprint.ledger.crypto import KeyStore, RecipientKey

    root = settings.platform_dir
    key = str(root)
    if key not in _platforms:
        root.mkdir(parents=True, exist_ok=True)
        key_file = root / "platform_x25519.key"
        recipient = RecipientKey.from_private_bytes(
            load_or_create_secret(key_file, lambda: RecipientKey.generate().private_bytes(), "platform key")
        )
        fingerprints = FingerprintStore(root / "fingerprints")
        platform = Platform(
            liveness=load_default_model(),
            blockstore=Blockstore(root / "blocks"),
            keys=KeyStore(root / "keys"),
            platform_key=recipient,
            chain_id=settings.chain_id,
            fingerprints=fingerprints,
        )
        fingerprints.load_into(platform.index, platform.owners)
        _platforms[key] = platform
    return _platforms[key]


PlatformDep = Annotated[Platform, Depends(get_platform)]
