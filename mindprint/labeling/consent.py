"""Research consent: a statement the contributor signs with their wallet (EIP-191).

Only samples of contributors whose latest signed statement grants consent are exported.
The statement and its signature travel with every exported recording, so a researcher
can check the consent as well as the data (``mindprint verify``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address

from mindprint.core.errors import MindprintError

__all__ = ["Consent", "ConsentError", "check_consent", "consent_message"]

GRANT = "I grant consent for my accepted samples to be shared, pseudonymised, with researchers."
WITHDRAW = "I withdraw my consent for my samples to be shared with researchers."
_PATTERN = re.compile(
    r"^(?P<domain>\S+) research consent\n\n(?P<statement>.+)\n\nAddress: (?P<address>0x[0-9a-fA-F]{40})\n"
    r"Issued At: (?P<issued>\S+)$"
)
MAX_AGE = dt.timedelta(minutes=10)


class ConsentError(MindprintError):
    """A consent statement that does not parse or does not verify."""


@dataclass(frozen=True, slots=True)
class Consent:
    address: str
    granted: bool
    domain: str
    issued: dt.datetime


def consent_message(domain: str, address: str, granted: bool, issued: dt.datetime) -> str:
    statement = GRANT if granted else WITHDRAW
    stamp = issued.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return f"{domain} research consent\n\n{statement}\n\nAddress: {to_checksum_address(address)}\nIssued At: {stamp}"


def check_consent(
    message: str, signature: str, *, domain: str | None = None, now: dt.datetime | None = None
) -> Consent:
    """Parse and verify a signed statement; ``now`` set → it must be fresh (±10 min)."""
    match = _PATTERN.match(message)
    if match is None or match["statement"] not in (GRANT, WITHDRAW):
        raise ConsentError("not a mindprint research consent statement")
    if domain is not None and match["domain"] != domain:
        raise ConsentError(f"statement is for {match['domain']}, not {domain}")
    try:
        issued = dt.datetime.fromisoformat(match["issued"].replace("Z", "+00:00"))
        signer = Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception as err:  # eth-account and fromisoformat raise several types
        raise ConsentError(f"consent statement does not verify: {err}") from err
    if signer != to_checksum_address(match["address"]):
        raise ConsentError("consent statement is not signed by the address it names")
    if now is not None and abs(now - issued) > MAX_AGE:
        raise ConsentError("consent statement is stale or from the future; sign a fresh one")
    return Consent(signer, match["statement"] == GRANT, match["domain"], issued)
