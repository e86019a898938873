"""Property-based API testing with schemathesis: no input, from any role, makes the server answer 5xx."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from mindprint.api.app import create_app
from mindprint.api.settings import ApiSettings

WORKDIR = Path(tempfile.mkdtemp(prefix="mindprint-schemathesis-"))
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)  # nothing left behind by an import
OPERATOR = Account.create()
SETTINGS = ApiSettings(
    database_url=f"sqlite:///{WORKDIR / 'platform.db'}",
    operators=(OPERATOR.address.lower(),),
    data_dir=WORKDIR / "platform",
)
APP = create_app()
APP.state.settings = SETTINGS


def _token(account, role: str) -> str:  # type: ignore[no-untyped-def]
    with TestClient(APP) as client:

        def sign_in() -> str:
            issued = client.post("/auth/nonce", json={"address": account.address}).json()
            signature = account.sign_message(encode_defunct(text=issued["message"])).signature.to_0x_hex()
            answer = client.post("/auth/verify", json={"message": issued["message"], "signature": signature})
            return str(answer.json()["access_token"])

        token = sign_in()
        if role not in ("contributor", "operator"):
            operator = {"Authorization": f"Bearer {TOKENS['operator']}"}
            client.put(f"/accounts/{account.address}/role", json={"role": role}, headers=operator)
            token = sign_in()
        return token


TOKENS: dict[str, str] = {}
TOKENS["operator"] = _token(OPERATOR, "operator")
TOKENS["requester"] = _token(Account.create(), "requester")
TOKENS["contributor"] = _token(Account.create(), "contributor")
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_server_fail(case) -> None:  # type: ignore[no-untyped-def]
    for token in TOKENS.values():  # every role: the answers differ (403, 404, 409…), never 5xx
        headers = {"Authorization": f"Bearer {token}"} if case.path != "/auth/verify" else {}
        case.call_and_validate(headers=headers, checks=[not_a_server_error])
