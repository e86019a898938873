"""Property-based API testing with schemathesis: no input makes the server answer 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from mindprint.api.app import create_app
from mindprint.api.settings import ApiSettings, get_settings

WORKDIR = Path(tempfile.mkdtemp(prefix="mindprint-schemathesis-"))
OPERATOR = Account.create()
SETTINGS = ApiSettings(
    database_url=f"sqlite:///{WORKDIR / 'platform.db'}",
    operators=(OPERATOR.address.lower(),),
    data_dir=WORKDIR / "platform",
)
APP = create_app()
APP.dependency_overrides[get_settings] = lambda: SETTINGS


def _token() -> str:
    with TestClient(APP) as client:
        issued = client.post("/auth/nonce", json={"address": OPERATOR.address}).json()
        signature = OPERATOR.sign_message(encode_defunct(text=issued["message"])).signature.to_0x_hex()
        return str(
            client.post("/auth/verify", json={"message": issued["message"], "signature": signature}).json()[
                "access_token"
            ]
        )


TOKEN = _token()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_server_fail(case) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {TOKEN}"} if case.path != "/auth/verify" else {}
    case.call_and_validate(headers=headers, checks=[not_a_server_error])
