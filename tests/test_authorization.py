"""Every route × every role: who may call what. A new route fails this test until it is classified."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from mindprint.api.app import create_app

from .test_api import OPERATOR, _auth, _settings, sign_in

PUBLIC = "public"
ANY = "signed-in"
CONTRIBUTOR = ("contributor",)
REQUESTER = ("requester", "operator")
OPERATOR_ONLY = ("operator",)

ROUTES: dict[tuple[str, str], object] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/config"): PUBLIC,
    ("POST", "/auth/nonce"): PUBLIC,
    ("POST", "/auth/verify"): PUBLIC,
    ("GET", "/consent"): ANY,
    ("POST", "/consent"): ANY,
    ("PUT", "/accounts/{address}/role"): OPERATOR_ONLY,
    ("POST", "/projects"): REQUESTER,
    ("GET", "/projects"): ANY,
    ("POST", "/projects/{project_id}/items"): REQUESTER,
    ("POST", "/projects/{project_id}/images"): REQUESTER,
    ("GET", "/images/{cid}"): ANY,
    ("GET", "/tasks/next"): CONTRIBUTOR,
    ("GET", "/projects/{project_id}/consensus"): REQUESTER,
    ("GET", "/projects/{project_id}/export"): REQUESTER,
    ("POST", "/devices"): CONTRIBUTOR,
    ("POST", "/sessions"): CONTRIBUTOR,
    ("GET", "/sessions/{session}"): ANY,
    ("PUT", "/sessions/{session}/chunks/{seq}"): CONTRIBUTOR,
    ("POST", "/submissions"): CONTRIBUTOR,
    ("GET", "/submissions"): ANY,
    ("GET", "/submissions/{cid}"): ANY,
    ("GET", "/samples/{cid}/proof"): ANY,
    ("POST", "/api-keys"): OPERATOR_ONLY,
    ("GET", "/samples/{cid}"): ANY,
    ("POST", "/rewards/epochs"): OPERATOR_ONLY,
    ("GET", "/rewards"): ANY,
    ("POST", "/federated/rounds"): OPERATOR_ONLY,
    ("GET", "/federated/rounds/latest"): ANY,
    ("GET", "/federated/rounds/{round_id}"): ANY,
    ("POST", "/federated/rounds/{round_id}/{step}"): ANY,
    ("GET", "/federated/models"): ANY,
    ("GET", "/federated/models/{cid}"): ANY,
}
FILL = {
    "address": "0x" + "ab" * 20,
    "project_id": "1",
    "session": "s-1",
    "seq": "0",
    "round_id": "1",
    "step": "keys",
    "cid": "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    tmp: Path = tmp_path_factory.mktemp("authz")
    app = create_app()
    settings = _settings(tmp, data_dir=tmp / "platform")
    app.state.settings = settings
    with TestClient(app, raise_server_exceptions=False) as client:
        operator = sign_in(client, OPERATOR)
        requester = Account.create()
        sign_in(client, requester)
        client.put(f"/accounts/{requester.address}/role", json={"role": "requester"}, headers=_auth(operator))
        headers = {
            "anonymous": {},
            "contributor": _auth(sign_in(client, Account.create())),
            "requester": _auth(sign_in(client, requester)),
            "operator": _auth(operator),
        }
        yield client, headers


def test_every_route_is_classified(world) -> None:  # type: ignore[no-untyped-def]
    client, _ = world
    spec = client.get("/openapi.json").json()["paths"]
    found = {(method.upper(), path) for path, operations in spec.items() for method in operations}
    assert found == set(ROUTES), f"unclassified: {found - set(ROUTES)}; gone: {set(ROUTES) - found}"


@pytest.mark.parametrize(("method", "path"), sorted(ROUTES), ids=[f"{m} {p}" for m, p in sorted(ROUTES)])
@pytest.mark.parametrize("role", ["anonymous", "contributor", "requester", "operator"])
def test_route_role_matrix(world, method: str, path: str, role: str) -> None:  # type: ignore[no-untyped-def]
    client, headers = world
    rule = ROUTES[(method, path)]
    url = re.sub(r"\{(\w+)\}", lambda m: FILL[m.group(1)], path)
    body = None if method in ("GET", "DELETE") else {}
    if path == "/auth/nonce":
        body = {"address": "0x" + "cd" * 20}
    answer = client.request(method, url, json=body, headers=headers[role])
    assert answer.status_code < 500, (method, path, role, answer.text)
    if rule == PUBLIC:
        assert answer.status_code not in (401, 403)
    elif role == "anonymous":
        assert answer.status_code == 401, (method, path, answer.status_code)
    elif rule == ANY or role in rule:  # type: ignore[operator]
        assert answer.status_code not in (401, 403), (method, path, role, answer.text)
    else:
        assert answer.status_code == 403, (method, path, role, answer.status_code, answer.text)
