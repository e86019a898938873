"""Accounts: roles granted by operators, and API keys for services."""

from __future__ import annotations

import hashlib
import secrets

from eth_utils import is_address, to_checksum_address
from sqlalchemy.orm import Session

from mindprint.core.errors import InvalidRequest
from mindprint.labeling.store import ROLES, Account, ApiKey

__all__ = ["create_api_key", "set_role"]


def set_role(db: Session, address: str, role: str) -> Account:
    """Grant ``role`` to ``address`` (creating the account if it never signed in)."""
    if not is_address(address):
        raise InvalidRequest("not an Ethereum address")
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}")
    checksum = to_checksum_address(address)
    account = db.get(Account, checksum) or Account(address=checksum)
    account.role = role
    db.add(account)
    db.commit()
    return account


def create_api_key(db: Session, name: str, role: str) -> tuple[str, Account]:
    """A key for a service (sent as ``X-API-Key``): returned once, stored as its SHA-256."""
    key = "mpk_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    address = to_checksum_address("0x" + digest[:40])  # a service account no wallet controls
    account = Account(address=address, role=role)
    db.add(account)
    db.flush()
    db.add(ApiKey(digest=digest, name=name, address=address))
    db.commit()
    return key, account
