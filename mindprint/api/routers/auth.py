"""Sign-in with Ethereum: nonce, then verify → bearer token."""

from __future__ import annotations

import datetime as dt

from eth_utils import to_checksum_address
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from mindprint.api.auth import AuthError, issue_token, new_nonce, parse_siwe, recover_signer, siwe_message
from mindprint.api.deps import AccountDep, DbDep, PlatformDep, SettingsDep
from mindprint.api.schemas import ERRORS, NonceRequest, NonceResponse, TokenResponse, VerifyRequest
from mindprint.core.errors import TooManyRequests
from mindprint.labeling.consent import ConsentError, check_consent, consent_message
from mindprint.labeling.store import Account, LoginNonce, aware, utcnow

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/nonce", response_model=NonceResponse, responses=ERRORS)
def nonce(body: NonceRequest, settings: SettingsDep, db: DbDep, platform: PlatformDep) -> NonceResponse:
    """A fresh nonce and the EIP-4361 message to sign with the wallet."""
    address = to_checksum_address(body.address)
    wait = platform.nonce_limits.take(address)
    if wait:
        raise TooManyRequests(f"too many sign-in attempts for {address}; retry in {wait:.0f} s", wait)
    issued = utcnow().replace(microsecond=0)
    expires = issued + dt.timedelta(minutes=5)
    value = new_nonce()
    message = siwe_message(settings.domain, address, value, settings.chain_id, issued, expires)
    # used and expired nonces go as new ones come: the table holds minutes of sign-ins, not history
    db.execute(delete(LoginNonce).where(LoginNonce.expires < issued - dt.timedelta(minutes=5)))
    db.add(LoginNonce(nonce=value, address=address, expires=expires, used=False, message=message))
    db.commit()
    return NonceResponse(nonce=value, message=message)


@router.post("/verify", response_model=TokenResponse, responses=ERRORS)
def verify(body: VerifyRequest, settings: SettingsDep, db: DbDep, platform: PlatformDep) -> TokenResponse:
    """Check the signed message; returns a short-lived bearer token.

    Strict: the message must be, byte for byte, the one ``/auth/nonce`` issued (so domain,
    URI, version, chain id, statement, issued-at and expiry are all the server's), signed
    by its address, before its expiry; the nonce is consumed atomically (one token per nonce).
    """
    try:
        parsed = parse_siwe(body.message)
        signer = recover_signer(body.message, body.signature)
    except AuthError as err:
        raise HTTPException(401, str(err)) from err
    if parsed.domain != settings.domain:
        raise HTTPException(401, f"message is for {parsed.domain}, not {settings.domain}")
    if signer != parsed.address:
        raise HTTPException(401, "signature is not from the address in the message")
    record = db.get(LoginNonce, parsed.nonce)
    if record is None or record.address != signer:
        raise HTTPException(401, "unknown nonce")
    if record.message is not None and record.message != body.message:
        raise HTTPException(401, "the message differs from the one issued for this nonce")
    if record.used:
        raise HTTPException(401, "nonce already used (replayed sign-in)")
    if aware(record.expires) < utcnow():
        raise HTTPException(401, "sign-in message expired")
    consumed = db.execute(
        update(LoginNonce).where(LoginNonce.nonce == parsed.nonce, LoginNonce.used.is_(False)).values(used=True)
    )
    if consumed.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        raise HTTPException(401, "nonce already used (replayed sign-in)")
    db.commit()  # the nonce is spent whatever happens next
    account = db.get(Account, signer)
    if account is None:
        role = "operator" if signer.lower() in settings.operators else "contributor"
        account = Account(address=signer, role=role)
        db.add(account)
    try:
        db.commit()
    except IntegrityError:  # the same new account created by a concurrent sign-in
        db.rollback()
        account = db.get(Account, signer)
        assert account is not None
    token = issue_token(platform.token_secret, signer, account.role, settings.token_seconds)
    return TokenResponse(access_token=token, address=signer, role=account.role, expires_in=settings.token_seconds)


consent_router = APIRouter(tags=["auth"])


class ConsentBody(BaseModel):
    message: str = Field(max_length=1000, description="the statement from GET /consent, unchanged")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="EIP-191 signature by the contributor")


@consent_router.get("/consent")
def consent_status(account: AccountDep, settings: SettingsDep, granted: bool = True) -> dict[str, object]:
    """The current consent and a fresh statement to sign (grant, or withdraw with ``granted=false``)."""
    message = consent_message(settings.domain, account.address, granted, utcnow())
    return {"consent": account.consent, "message": message}


@consent_router.post("/consent")
def give_consent(body: ConsentBody, account: AccountDep, settings: SettingsDep, db: DbDep) -> dict[str, object]:
    """Grant or withdraw research consent; only consenting contributors' samples are exported."""
    try:
        consent = check_consent(body.message, body.signature, domain=settings.domain, now=utcnow())
    except ConsentError as err:
        raise HTTPException(422, str(err)) from err
    if consent.address != account.address:
        raise HTTPException(403, "the statement names another address")
    record = db.get(Account, account.address)
    assert record is not None  # the signed-in account exists
    record.consent, record.consent_message, record.consent_signature = consent.granted, body.message, body.signature
    db.commit()
    return {"consent": consent.granted, "issued": consent.issued.isoformat()}
