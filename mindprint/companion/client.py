"""The companion's HTTP client for the platform: sign-in, devices, sessions, chunks, samples.

Transport errors and 5xx answers raise :class:`PlatformUnavailable` (worth retrying:
the platform is down or restarting); any other error answer raises :class:`PlatformError`
with the problem's detail.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

from mindprint.core.errors import MindprintError
from mindprint.device.keys import DeviceKey
from mindprint.ledger.crypto import WrappedKey
from mindprint.protocol.formats import SignedSample, device_typed_data

__all__ = ["PlatformClient", "PlatformError", "PlatformUnavailable", "server_timing"]


class PlatformError(MindprintError):
    """The platform answered with an error (problem+json detail in the message)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PlatformUnavailable(PlatformError):
    """The platform cannot be reached or answered 5xx: retry later."""


def server_timing(header: str) -> dict[str, float]:
    """The metrics of a ``Server-Timing`` header with a duration, in ms by name (the
    submission route sends each step's wall time as ``<step>`` and its CPU as ``cpu-<step>``)."""
    steps: dict[str, float] = {}
    for part in header.split(","):
        name, _, duration = part.strip().partition(";dur=")
        if duration:
            steps[name] = float(duration)
    return steps


class PlatformClient:
    """A signed-in contributor's HTTP client for the labeling API."""

    def __init__(self, url: str, wallet: Any, *, timeout: float = 60.0, http: httpx.Client | None = None) -> None:
        self.wallet = wallet
        self.http = http if http is not None else httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.token: str | None = None
        #: the ``Server-Timing`` header of the last answer (per-step durations, if the route sends them)
        self.last_timing: str = ""

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._request(method, path, **kwargs)
        except PlatformError as err:
            # a long run outlives its bearer token: sign in again once and retry
            if err.status != 401 or self.token is None or path.startswith("/auth/"):
                raise
            self.token = None
            self.sign_in()
            return self._request(method, path, **kwargs)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        raw = kwargs.pop("raw", False)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as err:
            raise PlatformUnavailable(f"platform at {self.http.base_url} unreachable: {err}") from err
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:500]
            kind = PlatformUnavailable if response.status_code >= 500 else PlatformError
            raise kind(f"{method} {path} → {response.status_code}: {detail}", response.status_code)
        self.last_timing = response.headers.get("server-timing", "")
        return response if raw else response.json()

    def raw(self, method: str, path: str) -> httpx.Response:
        """A call whose answer is not JSON (an image): the response itself."""
        response: httpx.Response = self._call(method, path, raw=True)
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any API call as this wallet (signs in, and again when the token expired)."""
        return self._call(method, path, **kwargs)

    def sign_in(self) -> dict[str, Any]:
        issued = self._call("POST", "/auth/nonce", json={"address": self.wallet.address})
        signature = self.wallet.sign_message(encode_defunct(text=issued["message"])).signature.to_0x_hex()
        answer = self._call("POST", "/auth/verify", json={"message": issued["message"], "signature": signature})
        self.token = answer["access_token"]
        return dict(answer)

    def config(self) -> dict[str, Any]:
        return dict(self._call("GET", "/config"))

    def bind_device(self, key: DeviceKey) -> None:
        config = self.config()
        deadline = int(time.time()) + 600
        typed = device_typed_data(
            key.public_key, self.wallet.address, deadline, config["chain_id"], config["device_registry"]
        )
        signature = Account.sign_typed_data(self.wallet.key, full_message=typed).signature.to_0x_hex()
        self._call("POST", "/devices", json={"device": key.device_id, "deadline": deadline, "signature": signature})

    def next_task(self, project: int | None = None) -> dict[str, Any] | None:
        params = {"project": project} if project is not None else None
        task = self._call("GET", "/tasks/next", params=params)
        return dict(task) if task else None

    def open_session(self, header_block: bytes, signature: bytes, wrapped: WrappedKey) -> dict[str, Any]:
        body = {
            "header": base64.b64encode(header_block).decode(),
            "signature": signature.hex(),
            "wrapped_key": wrapped.to_dict(),
        }
        return dict(self._call("POST", "/sessions", json=body))

    def session_state(self, session: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/sessions/{session}"))

    def put_chunk(self, session: str, seq: int, cid: str, signature: bytes, envelope: bytes) -> dict[str, Any]:
        body = {"cid": cid, "signature": signature.hex(), "envelope": base64.b64encode(envelope).decode()}
        return dict(self._call("PUT", f"/sessions/{session}/chunks/{seq}", json=body))

    def submit(self, signed: SignedSample, idempotency_key: str | None = None) -> dict[str, Any]:
        body = {
            "sample": base64.b64encode(signed.block).decode(),
            "device_signature": signed.device_signature.hex(),
            "wallet_signature": "0x" + signed.wallet_signature.hex(),
        }
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return dict(self._call("POST", "/submissions", json=body, headers=headers))

    def create_project(
        self,
        name: str,
        label_schema: dict[str, Any],
        *,
        redundancy: int = 3,
        description: str = "",
        challenge_cues: int = 0,
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "label_schema": label_schema,
            "redundancy": redundancy,
            "description": description,
            "challenge_cues": challenge_cues,
        }
        return dict(self._call("POST", "/projects", json=body))

    def add_items(self, project: int, items: list[dict[str, Any]]) -> list[int]:
        """Add items ``{"content": {"text"|"image_cid": …}, "gold": answer or None}`` (1,000 per request)."""
        ids: list[int] = []
        for start in range(0, len(items), 1000):
            answer = self._call("POST", f"/projects/{project}/items", json={"items": items[start : start + 1000]})
            ids += answer["ids"]
        return ids

    def proof(self, cid: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/samples/{cid}/proof"))

    def consent(self, granted: bool = True) -> dict[str, Any]:
        """Sign and send the research-consent statement (grant or withdraw)."""
        message = self._call("GET", "/consent", params={"granted": granted})["message"]
        signature = self.wallet.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        return dict(self._call("POST", "/consent", json={"message": message, "signature": signature}))
