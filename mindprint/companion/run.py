"""A labeling run: one recording streamed to the platform, one trial per task.

Each trial has its own ``stimulus`` marker (when the task is shown) and ``response``
marker (when it is answered), found in the in-memory index after the markers of the
trials before it; its epoch starts after the previous trial's epoch ends, so every sample
cites a distinct stretch of EEG. A sample is submitted once the platform holds the chunks
it cites; while the platform is unreachable, chunks and samples wait and are retried with
the same ``Idempotency-Key`` — nothing is lost and the recording goes on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mindprint.companion.client import PlatformClient, PlatformError, PlatformUnavailable
from mindprint.companion.samples import EpochNotContiguous, sign_sample
from mindprint.companion.stream import ChunkIndex, ChunkUploader
from mindprint.core.errors import MindprintError
from mindprint.device.bridge import Acquisition, BoardSource
from mindprint.device.keys import DeviceKey
from mindprint.device.recorder import record_session

logger = logging.getLogger(__name__)

__all__ = ["LabelingRun", "Trial"]

TMIN, TMAX = -1.0, 3.0
#: a task is shown at most this many times when the device keeps losing data during it
MAX_PRESENTATIONS = 3
#: data after a gap within which a marker inserted before it must have arrived, else it was lost
MARKER_GRACE_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Trial:
    task: dict[str, Any]
    label: Any
    verdict: dict[str, Any]
    stimulus_ns: int
    response_ns: int
    #: why the task was shown again before this answer (the device lost data mid-trial)
    repeats: tuple[str, ...] = ()


Answerer = Callable[[dict[str, Any]], Any]


#: shows cue ``i`` of a task's challenge and returns once it is on screen
Cue = Callable[[dict[str, Any], int], None]


class LabelingRun:
    """Record one session, stream it, and label tasks from the platform inside it."""

    def __init__(
        self,
        client: PlatformClient,
        source: BoardSource,
        key: DeviceKey,
        out: Path,
        *,
        chain_id: int,
        platform_key: bytes | None = None,
        outage_seconds: float = 600.0,
        model: tuple[str, Any] | None = None,
        keep: Any = None,
    ) -> None:
        self.client = client
        self.model = model  # (CID, model): run on every epoch, output signed with the sample
        self.keep = keep  # a LocalEpochs: accepted epochs stay on the device for federated training
        self.source = source
        self.key = key
        self.out = out
        self.chain_id = chain_id
        self.outage_seconds = outage_seconds
        self.index = ChunkIndex(out)
        if platform_key is None:
            platform_key = bytes.fromhex(client.config()["platform_key"])
        self.uploader = ChunkUploader(client, self.index, platform_key)
        self._acquisition: Acquisition | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_epoch_ns = 0
        self._markers_seen = 0
        self.error: BaseException | None = None

    def __enter__(self) -> LabelingRun:
        def started(acquisition: Acquisition) -> None:
            self._acquisition = acquisition
            self._ready.set()

        def run() -> None:
            try:
                record_session(
                    self.source,
                    self.out,
                    self.key,
                    duration=None,
                    chunk_seconds=0.5,
                    on_start=started,
                    on_open=self.index.opened,
                    on_written=self.index.written,
                )
            except BaseException as err:  # surfaced to the caller by _wait_for
                self.error = err
                self._ready.set()

        self.uploader.start()
        self._thread = threading.Thread(target=run, name="mindprint-label-recording", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            self.uploader.stop()
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._acquisition is not None:
            self._acquisition.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.uploader.stop(drain_seconds=self.outage_seconds if exc[0] is None else 0.0)

    def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.error is not None:
                raise self.error
            if self._acquisition is not None and self._acquisition.ended:
                raise MindprintError(f"recording ended: {self._acquisition.ended}")
            if time.monotonic() > deadline:
                raise MindprintError("timed out waiting for the recording")
            with self.index.changed:
                self.index.changed.wait(0.1)

    def trial(
        self,
        task: dict[str, Any],
        answer: Answerer,
        *,
        pre: float = 1.5,
        post: float = 3.5,
        present: Callable[[dict[str, Any]], None] | None = None,
        cue: Cue | None = None,
        on_repeat: Callable[[dict[str, Any], str], None] | None = None,
    ) -> Trial:
        """Show ``task`` (stimulus marker), get the answer (response marker), sign and submit.

        ``present``, if given, shows the task and returns once it is on screen (the labeling
        page); the stimulus marker is inserted right after it returns. When the lease carries
        a challenge, a ``cue`` marker is inserted at each of its offsets after the stimulus —
        once ``cue`` (if given) has shown it — and the sample signs the nonce and the cues'
        device times.

        If the device loses data during the epoch (a gap in the recording: the platform would
        reject the sample as not contiguous), the sample is not signed: the task is shown and
        answered again after the gap, up to ``MAX_PRESENTATIONS`` times; ``on_repeat`` (if
        given) hears why before the task is shown again, and ``Trial.repeats`` keeps it. The
        same happens when the lost data took the trial's markers with it.
        """
        repeats: list[str] = []
        while True:
            try:
                trial = self._present_once(task, answer, pre=pre, post=post, present=present, cue=cue)
                return replace(trial, repeats=tuple(repeats))
            except EpochNotContiguous as err:
                repeats.append(str(err))
                logger.warning("task %s shown again: %s", task.get("id"), err)
                if len(repeats) >= MAX_PRESENTATIONS:
                    raise MindprintError(
                        f"the device lost data during {len(repeats)} presentations of task {task.get('id')} "
                        f"in a row ({err}): check the headset's connection"
                    ) from err
                if on_repeat is not None:
                    on_repeat(task, str(err))

    def _present_once(
        self,
        task: dict[str, Any],
        answer: Answerer,
        *,
        pre: float,
        post: float,
        present: Callable[[dict[str, Any]], None] | None,
        cue: Cue | None,
    ) -> Trial:
        """One presentation of ``task``: markers, cues, the epoch signed and submitted."""
        assert self._acquisition is not None
        # the stimulus comes after the previous epoch ends, with ``pre`` seconds of EEG before it
        not_before = self._next_epoch_ns - int(TMIN * 1e9)
        self._wait_for(lambda: self.index.recorded_until_ns() > max(not_before, int(pre * 1e9) + self._first_ns()), 30)
        seen = self.index.marker_count()
        presented_ns = self.index.recorded_until_ns()
        if present is not None:
            present(task)
        self._acquisition.insert_marker("stimulus")
        challenge = task.get("challenge") or None
        cues = self._start_cues(task, challenge, cue)
        label = answer(task)
        self._acquisition.insert_marker("response")
        self._await_markers(seen, {"stimulus": 1, "response": 1}, presented_ns)
        answered: dict[str, Any] | None = None
        if challenge is not None and cues is not None:
            thread, failures = cues
            thread.join(10.0)
            if failures or thread.is_alive():
                raise MindprintError(f"the challenge's cues were not shown: {failures or 'timed out'}")
            n = len(challenge["offsets_ms"])
            self._await_markers(seen, {"cue": n}, presented_ns)
            answered = {"nonce": challenge["nonce"], "cues_ns": self.index.find_markers("cue", seen)[:n]}
        stimulus = self.index.find_marker("stimulus", seen)
        response = self.index.find_marker("response", seen)
        assert stimulus is not None and response is not None  # _await_markers saw both
        self._wait_for(lambda: self.index.recorded_until_ns() > stimulus + int(post * 1e9), 30)
        # timestamps jitter: wait in samples too, for the whole epoch after its first chunk
        assert self.index.header is not None
        needed = round((TMAX - TMIN) * self.index.header.sfreq) + 1
        self._wait_for(lambda: self.index.samples_from(stimulus + int(TMIN * 1e9)) >= needed, 30)
        assert self.index.header is not None
        kept: list[Any] = []
        # the next presentation (this task again, or the next one) starts after this epoch
        self._next_epoch_ns = stimulus + int(TMAX * 1e9)
        signed = sign_sample(
            self.index.header,
            self.index.recent_chunks(),
            self.key,
            self.client.wallet,
            task=int(task["id"]),
            label=label,
            stimulus_ns=stimulus,
            response_ns=response,
            tmin=TMIN,
            tmax=TMAX,
            chain_id=self.chain_id,
            model=self.model,
            on_epoch=kept.append,
            challenge=answered,
        )
        cited = signed.value["chunks"]
        last_seq = next(e.seq for e in reversed(self.index.entries) if e.cid == cited[-1])
        verdict = self._submit(signed, last_seq)
        if self.keep is not None and verdict.get("status") == "accepted" and kept:
            header = self.index.header
            self.keep.add(label, kept[0], header.eeg_names, header.sfreq)
        return Trial(task, label, verdict, stimulus, response)

    def _await_markers(self, seen: int, wanted: dict[str, int], presented_ns: int) -> None:
        """Wait until the index holds ``wanted`` markers (label: count) after position ``seen``.

        A marker is written into the board's stream, so data the device loses takes the
        markers inserted meanwhile with it: once a gap declared after ``presented_ns`` is
        followed by a second of data and a marker is still missing, the presentation is
        over (:class:`EpochNotContiguous`: the task is shown again) instead of waiting for it.
        """
        waiting_from = self.index.recorded_until_ns()

        def missing() -> list[str]:
            return [label for label, n in wanted.items() if len(self.index.find_markers(label, seen)) < n]

        def settled() -> bool:
            gap = self.index.gap_after(presented_ns)
            return not missing() or (
                gap is not None and self.index.recorded_until_ns() > max(gap[1], waiting_from) + MARKER_GRACE_NS
            )

        self._wait_for(settled, 30)
        lost = missing()
        if lost:
            last, resume = self.index.gap_after(presented_ns) or (0, 0)
            self._next_epoch_ns = max(self._next_epoch_ns, resume)  # the next epoch starts after the gap
            raise EpochNotContiguous(
                f"the device lost {(resume - last) / 1e9:.2f} s of data during the trial, "
                f"and the {' and '.join(lost)} marker{'s' if len(lost) > 1 else ''} with it"
            )

    def _start_cues(
        self, task: dict[str, Any], challenge: dict[str, Any] | None, cue: Cue | None
    ) -> tuple[threading.Thread, list[BaseException]] | None:
        """A thread that inserts a ``cue`` marker at each of the challenge's offsets, and the
        list its failures go to (reported by the trial, not lost in the thread)."""
        if challenge is None:
            return None
        acquisition = self._acquisition
        assert acquisition is not None
        shown = time.monotonic()

        failures: list[BaseException] = []

        def run() -> None:
            try:
                for i, offset in enumerate(challenge["offsets_ms"]):
                    delay = shown + offset / 1000 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if cue is not None:
                        cue(task, i)
                    acquisition.insert_marker("cue")
            except Exception as err:
                failures.append(err)

        thread = threading.Thread(target=run, name="mindprint-cues", daemon=True)
        thread.start()
        return thread, failures

    def _first_ns(self) -> int:
        entries = self.index.entries
        return entries[0].t0_ns if entries else 0

    def _submit(self, signed: Any, last_seq: int) -> dict[str, Any]:
        """Submit once the cited chunks are held; retry through outages with one Idempotency-Key."""
        deadline = time.monotonic() + self.outage_seconds
        self.uploader.wait_sent(last_seq, self.outage_seconds)
        key = str(uuid.uuid4())
        delay = 0.2
        while True:
            try:
                return self.client.submit(signed, key)
            except PlatformUnavailable:
                if time.monotonic() > deadline:
                    raise
            except PlatformError as err:
                # the platform may not hold the cited chunks yet right after an outage
                if err.status != 409 or "does not hold" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
