"""The companion's side of labeling: talk to the platform, record trials, submit samples.

One recording runs for the whole labeling run; each task is a trial inside it — a
``stimulus`` marker when the task is shown, a ``response`` marker when it is answered —
and its sample references the signed chunks around that stimulus. The session file is
read while it is still being written: only chunks whose signature is already on disk
count, so every submission carries a valid, verifiable prefix of the session.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

from mindprint.core.errors import MindprintError
from mindprint.device.bridge import Acquisition, BoardSource
from mindprint.device.keys import DeviceKey
from mindprint.device.recorder import record_session
from mindprint.device.session import SESSION_FILE, iter_chunks
from mindprint.labeling.samples import SignedSample, build_sample
from mindprint.labeling.submissions import device_typed_data

logger = logging.getLogger(__name__)

__all__ = ["LabelingRun", "PlatformClient", "Trial"]


class PlatformError(MindprintError):
    """The platform answered with an error (problem+json detail in the message)."""


class PlatformClient:
    """A signed-in contributor's HTTP client for the labeling API."""

    def __init__(self, url: str, wallet: Any, *, timeout: float = 60.0) -> None:
        self.wallet = wallet
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.token: str | None = None

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as err:
            raise PlatformError(f"platform at {self.http.base_url} unreachable: {err}") from err
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise PlatformError(f"{method} {path} → {response.status_code}: {detail}")
        return response.json()

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

    def submit(self, signed: SignedSample, car: bytes) -> dict[str, Any]:
        body = {
            "sample": base64.b64encode(signed.block).decode(),
            "device_signature": signed.device_signature.hex(),
            "wallet_signature": "0x" + signed.wallet_signature.hex(),
            "session_car": base64.b64encode(car).decode(),
        }
        return dict(self._call("POST", "/submissions", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}))

    def proof(self, cid: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/samples/{cid}/proof"))

    def consent(self, granted: bool = True) -> dict[str, Any]:
        """Sign and send the research-consent statement (grant or withdraw)."""
        from eth_account.messages import encode_defunct

        message = self._call("GET", "/consent", params={"granted": granted})["message"]
        signature = self.wallet.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        return dict(self._call("POST", "/consent", json={"message": message, "signature": signature}))


@dataclass(frozen=True, slots=True)
class Trial:
    task: dict[str, Any]
    label: Any
    verdict: dict[str, Any]


Answerer = Callable[[dict[str, Any]], Any]


class LabelingRun:
    """Record one session while labeling tasks from the platform."""

    def __init__(
        self, client: PlatformClient, source: BoardSource, key: DeviceKey, out: Path, *, chain_id: int
    ) -> None:
        self.client = client
        self.source = source
        self.key = key
        self.out = out
        self.chain_id = chain_id
        self._acquisition: Acquisition | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def __enter__(self) -> LabelingRun:
        def started(acquisition: Acquisition) -> None:
            self._acquisition = acquisition
            self._ready.set()

        def run() -> None:
            try:
                record_session(self.source, self.out, self.key, duration=None, chunk_seconds=0.5, on_start=started)
            except BaseException as err:  # surfaced to the caller by _wait_for
                self.error = err
                self._ready.set()

        self._thread = threading.Thread(target=run, name="mindprint-label-recording", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._acquisition is not None:
            self._acquisition.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _marker_time(self, label: str, after_ns: int = 0) -> int | None:
        for _, block in iter_chunks(self.out):
            for index, _code, name in block.get("markers") or []:
                at = int(block["t0_ns"]) + round(index / block["sfreq"] * 1e9)
                if name == label and at > after_ns:
                    return at
        return None

    def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.error is not None:
                raise self.error
            if self._acquisition is not None and self._acquisition.ended:
                raise MindprintError(f"recording ended: {self._acquisition.ended}")
            if time.monotonic() > deadline:
                raise MindprintError("timed out waiting for the recording")
            time.sleep(0.1)

    def _recorded_until_ns(self) -> int:
        last = 0
        for _, block in iter_chunks(self.out):
            last = int(block["t0_ns"]) + round(
                len(block["samples"]["data"]) / 4 / len(block["channels"]) / block["sfreq"] * 1e9
            )
        return last

    def trial(self, task: dict[str, Any], answer: Answerer, *, pre: float = 1.5, post: float = 3.5) -> Trial:
        """Show ``task`` (stimulus marker), get the answer (response marker), sign and submit."""
        assert self._acquisition is not None
        previous = self._marker_time("response") or 0
        self._wait_for(
            lambda: (self.out / SESSION_FILE).exists() and self._recorded_until_ns() > previous + int(pre * 1e9), 30
        )
        self._acquisition.insert_marker("stimulus")
        label = answer(task)
        self._acquisition.insert_marker("response")
        self._wait_for(lambda: self._marker_time("response", previous) is not None, 30)
        stimulus = self._marker_time("stimulus", previous)
        response = self._marker_time("response", previous)
        assert stimulus is not None and response is not None
        self._wait_for(lambda: self._recorded_until_ns() > stimulus + int(post * 1e9), 30)
        signed = build_sample(
            self.out,
            self.key,
            self.client.wallet,
            task=int(task["id"]),
            label=label,
            stimulus_ns=stimulus,
            response_ns=response,
            chain_id=self.chain_id,
        )
        verdict = self.client.submit(signed, (self.out / SESSION_FILE).read_bytes())
        return Trial(task, label, verdict)
