"""Sign-In with Ethereum (EIP-4361) and short-lived bearer tokens.

The server issues a nonce and the exact message to sign; the wallet signs it
(``personal_sign``); the server checks domain, address, nonce (unused, unexpired) and
the recovered signer, then returns an HMAC-SHA256 bearer token ``payload.signature``
(base64url JSON with address, role and expiry).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_address, to_checksum_address

STATEMENT = "Sign in to mindprint."
_FIELD = re.compile(r"^(URI|Version|Chain ID|Nonce|Issued At|Expiration Time): (.+)$", re.MULTILINE)


class AuthError(Exception):
    """Sign-in or token failure (mapped to 401 by the API)."""


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def siwe_message(
    domain: str, address: str, nonce: str, chain_id: int, issued: dt.datetime, expires: dt.datetime
) -> str:
    """The EIP-4361 message for this sign-in."""
    return (
        f"{domain} wants you to sign in with your Ethereum account:\n{to_checksum_address(address)}\n\n{STATEMENT}\n\n"
        f"URI: https://{domain}\nVersion: 1\nChain ID: {chain_id}\nNonce: {nonce}\n"
        f"Issued At: {_iso(issued)}\nExpiration Time: {_iso(expires)}"
    )


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    domain: str
    address: str
    nonce: str
    expires: dt.datetime


def parse_siwe(message: str) -> ParsedMessage:
    lines = message.split("\n")
    if len(lines) < 2 or not lines[0].endswith(" wants you to sign in with your Ethereum account:"):
        raise AuthError("not an EIP-4361 sign-in message")
    address = lines[1].strip()
    if not is_address(address):
        raise AuthError("the message holds no valid address")
    fields = dict(_FIELD.findall(message))
    try:
        expires = dt.datetime.fromisoformat(fields["Expiration Time"].replace("Z", "+00:00"))
        if expires.tzinfo is None:
            raise ValueError("Expiration Time has no time zone")
        return ParsedMessage(lines[0].split(" ")[0], to_checksum_address(address), fields["Nonce"], expires)
    except (KeyError, ValueError) as err:
        raise AuthError(f"sign-in message lacks a valid field: {err}") from err


def recover_signer(message: str, signature: str) -> str:
    try:
        return str(Account.recover_message(encode_defunct(text=message), signature=signature))
    except Exception as err:  # eth-account raises several types for bad signatures
        raise AuthError("signature does not verify") from err


def new_nonce() -> str:
    return secrets.token_hex(16)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def issue_token(secret: bytes, address: str, role: str, seconds: int) -> str:
    payload = json.dumps(
        {"sub": address, "role": role, "exp": int(dt.datetime.now(dt.UTC).timestamp()) + seconds}
    ).encode()
    body = _b64(payload)
    return f"{body}.{_b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())}"


def read_token(secret: bytes, token: str) -> tuple[str, str]:
    """(address, role) from a valid, unexpired token."""
    try:
        body, signature = token.split(".")
        expected = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise AuthError("token signature invalid")
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, json.JSONDecodeError, UnicodeError) as err:
        raise AuthError("malformed token") from err
    if payload["exp"] < dt.datetime.now(dt.UTC).timestamp():
        raise AuthError("token expired; sign in again")
    return str(payload["sub"]), str(payload["role"])
