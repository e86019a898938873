"""The companion's labeling page (``mindprint label --ui``), served on 127.0.0.1 only.

The page shows each task and its answer buttons (with hotkeys), live EEG traces with
per-channel signal quality as colour and band powers, the verdict of every sample with its
reasons, and the contributor's rewards with a claim button. The companion signs: no wallet
extension is needed.

Markers come from the page: the ``stimulus`` marker is inserted when the page reports that
it has drawn the task (``POST /api/shown``, sent from the first animation frame after the
task is on screen), the ``response`` marker when the answer arrives (``POST /api/answer``).
When the task's lease carries a challenge, the page flashes a cue at each of its offsets
after the task was drawn and reports each once painted (``POST /api/cue``): the ``cue``
marker follows.

Only this machine's pages may drive it: every request must name the server's own
``Host`` (no DNS rebinding), and state-changing calls must carry JSON and
``X-Requested-With: mindprint`` (a cross-site form can send neither without a CORS
preflight, which this server never grants).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from mindprint.companion.client import PlatformClient, PlatformError
from mindprint.companion.run import LabelingRun
from mindprint.core.errors import MindprintError

logger = logging.getLogger(__name__)

__all__ = ["LabelingPage"]

LIVE_SECONDS = 4.0
BANDS = ("delta", "theta", "alpha", "beta", "gamma")


class Shown(BaseModel):
    task: int = Field(ge=0, le=2**31 - 1)


class CueShown(BaseModel):
    task: int = Field(ge=0, le=2**31 - 1)
    index: int = Field(ge=0, le=3)


class Answer(BaseModel):
    task: int = Field(ge=0, le=2**31 - 1)
    label: str | int | float = Field(union_mode="left_to_right")


@dataclass
class _State:
    phase: str = "starting"  # starting | waiting | showing | answered | done | failed
    task: dict[str, Any] | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    shown_at: float | None = None
    presentation: int = 0  # counts every time a task is put on the page (a task may come back)
    notice: str | None = None  # why the task on the page is shown again


class LabelingPage:
    """Drive a :class:`LabelingRun` from a browser page; :meth:`app` is the page's server."""

    def __init__(
        self,
        client: PlatformClient,
        run: LabelingRun,
        *,
        count: int,
        project: int | None = None,
        claim: Any = None,
        answer_timeout: float = 3600.0,
    ) -> None:
        self.client = client
        self.run = run
        self.count = count
        self.project = project
        self.claim = claim  # callable(claim dict) -> tx hash, or None when no chain is reachable
        self.answer_timeout = answer_timeout
        self.state = _State()
        self._lock = threading.Lock()
        self._shown = threading.Event()
        self._answers: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._cues: dict[tuple[int, int], threading.Event] = {}
        self._stop = threading.Event()
        self.finished = threading.Event()
        self.closed = threading.Event()

    # -- the labeling loop (its own thread) ---------------------------------------------
    def loop(self) -> None:
        try:
            for _ in range(self.count):
                if self._stop.is_set():
                    break
                task = self.client.next_task(self.project)
                if task is None:
                    break
                self._set(phase="waiting", task=None, notice=None)
                trial = self.run.trial(
                    task, self._await_answer, present=self._present, cue=self._await_cue, on_repeat=self._repeat
                )
                verdict = trial.verdict
                with self._lock:
                    self.state.trials.append(
                        {
                            "task": task["id"],
                            "label": trial.label,
                            "status": verdict.get("status"),
                            "scores": verdict.get("scores", {}),
                            "reasons": verdict.get("reasons", []),
                            "sample_cid": verdict.get("sample_cid"),
                            "response_time": (trial.response_ns - trial.stimulus_ns) / 1e9,
                            "repeats": list(trial.repeats),  # why the task was shown again
                        }
                    )
                    self.state.phase = "answered"
            self._set(phase="done", task=None)
        except (MindprintError, PlatformError) as err:
            logger.error("labeling stopped: %s", err)
            self._set(phase="failed", error=str(err), task=None)
        finally:
            self.finished.set()

    def close(self) -> None:
        """Stop serving the page (after its tasks are done)."""
        self.closed.set()

    def stop(self) -> None:
        self.closed.set()
        self._stop.set()
        self._shown.set()
        self._answers.put((-1, None))

    def _set(self, **values: Any) -> None:
        with self._lock:
            for name, value in values.items():
                setattr(self.state, name, value)

    def _repeat(self, task: dict[str, Any], reason: str) -> None:
        self._set(
            phase="waiting", notice=f"the headset lost data during task {task['id']}: it is shown again ({reason})"
        )

    def _present(self, task: dict[str, Any]) -> None:
        """Put the task on the page; return once the page has drawn it (the stimulus marker follows)."""
        self._shown.clear()
        with self._lock:
            self.state.phase, self.state.task, self.state.shown_at = "showing", task, None
            self.state.presentation += 1
        if not self._shown.wait(self.answer_timeout) or self._stop.is_set():
            raise MindprintError("the labeling page did not show the task (closed?)")

    def _cue_event(self, task: int, index: int) -> threading.Event:
        with self._lock:
            return self._cues.setdefault((task, index), threading.Event())

    def _await_cue(self, task: dict[str, Any], index: int) -> None:
        """The page flashes each cue at its offset itself and reports it once drawn."""
        if not self._cue_event(int(task["id"]), index).wait(5.0) or self._stop.is_set():
            raise MindprintError(f"the labeling page did not show cue {index + 1}")
        with self._lock:
            self._cues.pop((int(task["id"]), index), None)

    def _await_answer(self, task: dict[str, Any]) -> Any:
        while True:
            try:
                task_id, label = self._answers.get(timeout=self.answer_timeout)
            except queue.Empty as err:
                raise MindprintError("no answer from the labeling page") from err
            if self._stop.is_set():
                raise MindprintError("stopped")
            if task_id == task["id"]:
                return label

    # -- live EEG ---------------------------------------------------------------------
    def live(self, max_points: int = 400) -> dict[str, Any]:
        """The last seconds of EEG (filtered, µV), per-channel quality and relative band powers."""
        from mindprint.device.session import chunk_samples
        from mindprint.signal.pipeline import process_recording

        header = self.run.index.header
        chunks = self.run.index.recent_chunks()
        if header is None or not chunks:
            return {"ready": False}
        keep = int(LIVE_SECONDS * header.sfreq)
        parts, held = [], 0
        for _, value in reversed(chunks):
            block = chunk_samples(value)
            parts.append(block)
            held += block.shape[1]
            if held >= keep:
                break
        data = np.concatenate(parts[::-1], axis=1)[header.eeg_rows, -keep:].astype(np.float64)
        if data.shape[1] < int(2 * header.sfreq):
            return {"ready": False}
        result = process_recording(data, header.sfreq, list(header.eeg_names))
        step = max(1, data.shape[1] // max_points)
        quality = result.quality_matrix()
        relative = result.summary()["relative_power"]
        assert isinstance(relative, dict)
        return {
            "ready": True,
            "names": list(header.eeg_names),
            "t": (np.arange(0, data.shape[1], step) / header.sfreq - data.shape[1] / header.sfreq).round(3).tolist(),
            "channels": (result.filtered[:, ::step] * 1e6).round(2).tolist(),
            "quality": (quality[-1] if quality.size else np.ones(data.shape[0])).round(3).tolist(),
            "bands": {b: round(float(relative.get(b, 0.0)), 4) for b in BANDS if b in relative},
        }

    # -- the page's server ---------------------------------------------------------------
    def app(self, host: str) -> FastAPI:
        from fastapi.templating import Jinja2Templates

        from mindprint.web.pages import CSP, HERE

        templates = Jinja2Templates(directory=HERE / "templates")
        app = FastAPI(title="mindprint companion", docs_url=None, redoc_url=None, openapi_url=None)
        app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="static")

        @app.middleware("http")
        async def local_only(request: Request, call_next: Any) -> Response:
            if request.headers.get("host") != host:
                return JSONResponse({"detail": "this page answers only to its own address"}, status_code=421)
            if request.method == "POST" and (
                request.headers.get("x-requested-with") != "mindprint"
                or not request.headers.get("content-type", "").startswith("application/json")
            ):
                return JSONResponse({"detail": "send JSON with X-Requested-With: mindprint"}, status_code=403)
            response = await call_next(request)
            response.headers.setdefault("Content-Security-Policy", CSP)
            return response

        @app.get("/", response_class=HTMLResponse)
        def page(request: Request) -> HTMLResponse:
            return templates.TemplateResponse(
                request, "label.html", {"account": None, "address": self.client.wallet.address, "count": self.count}
            )

        @app.get("/api/state")
        def state() -> dict[str, Any]:
            with self._lock:
                s = self.state
                return {
                    "phase": s.phase,
                    "task": s.task,
                    "trials": list(s.trials),
                    "error": s.error,
                    "count": self.count,
                    "presentation": s.presentation,
                    "notice": s.notice,
                }

        @app.post("/api/shown")
        def shown(body: Shown) -> dict[str, Any]:
            with self._lock:
                current = self.state.task
                if self.state.phase != "showing" or current is None or current["id"] != body.task:
                    raise HTTPException(409, "that task is not the one being shown")
                self.state.shown_at = time.time()
            self._shown.set()
            return {"ok": True}

        @app.post("/api/cue")
        def cue(body: CueShown) -> dict[str, Any]:
            with self._lock:
                current = self.state.task
                challenge = (current or {}).get("challenge") or {}
                if current is None or current["id"] != body.task or body.index >= len(challenge.get("offsets_ms", [])):
                    raise HTTPException(409, "that cue is not one of the current task's challenge")
            self._cue_event(body.task, body.index).set()
            return {"ok": True}

        @app.post("/api/answer")
        def answer(body: Answer) -> dict[str, Any]:
            with self._lock:
                current = self.state.task
                if self.state.phase != "showing" or current is None or current["id"] != body.task:
                    raise HTTPException(409, "that task is not the one being answered")
                if self.state.shown_at is None:
                    raise HTTPException(409, "the task has not been shown yet")
                self.state.phase = "submitting"
            self._answers.put((body.task, body.label))
            return {"ok": True}

        @app.get("/api/eeg")
        def eeg() -> dict[str, Any]:
            return self.live()

        @app.get("/api/history")
        def history() -> list[dict[str, Any]]:
            """Every sample of this contributor on the platform (the newest 50), all sessions."""
            return list(self.client.call("GET", "/submissions", params={"limit": 50}))

        @app.get("/api/rewards")
        def rewards() -> dict[str, Any]:
            found = self.client.call("GET", "/rewards")
            found["can_claim"] = self.claim is not None
            return dict(found)

        @app.post("/api/claim")
        def claim() -> dict[str, Any]:
            if self.claim is None:
                raise HTTPException(409, "claims need a chain endpoint: start with --rpc-url")
            claims = self.client.call("GET", "/rewards")["claims"]
            if not claims:
                raise HTTPException(409, "nothing to claim yet: no reward epoch has closed with your samples")
            try:
                return {"tx_hash": self.claim(claims[-1]), "epoch": claims[-1]["epoch"]}
            except Exception as err:  # already claimed, a node that is down: the page says why
                raise HTTPException(409, f"claim failed: {err}") from err

        @app.get("/images/{cid}")
        def image(cid: str) -> Response:
            response = self.client.raw("GET", f"/images/{cid}")
            return Response(response.content, media_type=response.headers.get("content-type", "image/png"))

        return app


def claim_on(chain: Any, distributor: str) -> Any:
    """A claim callable for the page: sends a claim (as ``GET /rewards`` lists it) from ``chain``'s account."""

    def send(claim: dict[str, Any]) -> str:
        from mindprint.ledger.rewards import Claim, claim_reward

        parsed = Claim(
            epoch=int(claim["epoch"]),
            account=str(claim["account"]),
            amount=int(claim["amount"]),
            proof=list(claim["proof"]),
            root=str(claim["root"]),
        )
        return str(claim_reward(chain, distributor, parsed).tx_hash)

    return send


def claim_with(rpc_url: str, wallet_key: str, distributor: str) -> Any:
    """:func:`claim_on` a JSON-RPC chain, as the contributor's wallet."""
    from mindprint.ledger.chain import ChainClient

    return claim_on(ChainClient.connect(rpc_url, wallet_key), distributor)


def run_page(
    page: LabelingPage,
    port: int | None = None,
    on_ready: Any = None,
    on_done: Any = None,
    *,
    keep_open: bool = True,
) -> None:
    """Serve ``page`` on 127.0.0.1 and label until its tasks are done; the page then stays
    up (verdicts, rewards, the claim button) until :meth:`LabelingPage.close` or Ctrl-C,
    or, without ``keep_open``, a few seconds (for the page's last poll)."""
    from mindprint.api.server import ServerThread, free_port

    port = port or free_port()
    server = ServerThread(page.app(f"127.0.0.1:{port}"), port)
    with server:
        if on_ready is not None:
            on_ready(server.url)
        worker = threading.Thread(target=page.loop, name="mindprint-label-page", daemon=True)
        worker.start()
        try:
            while not page.finished.wait(0.5):
                pass
            if on_done is not None:
                on_done()
            if not keep_open:
                page.closed.wait(3.0)
            while keep_open and not page.closed.wait(0.5):
                pass
        except KeyboardInterrupt:
            page.stop()
            worker.join(timeout=10)
