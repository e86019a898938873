"""The BrainFlow bridge: background acquisition, faults, reconnection, chunking.

One code path opens every board (``BrainFlowSource`` over ``BoardShim``). A thread
pulls data into a :class:`~mindprint.device.ringbuffer.RingBuffer`; a board that stops
delivering (BrainFlow error, no data for ``stall_timeout`` seconds, file ended,
unplugged) is noticed, closed and reopened with exponential backoff, and the outage is
recorded as an explicit :class:`Gap` so the session never hides lost data. A finite
source (playback) that runs dry ends the stream instead of restarting the file.

EEG arrives from BrainFlow in microvolts and is converted to volts here, exactly once.
This module never imports mindprint.signal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from brainflow.board_shim import BoardIds, BoardShim
from brainflow.exit_codes import BrainFlowError
from numpy.typing import NDArray

from mindprint.core.errors import BoardConnectionError, ConfigurationError, DeviceError
from mindprint.device.boards import BoardInfo, BoardSpec
from mindprint.device.ringbuffer import RingBuffer

logger = logging.getLogger(__name__)

MICROVOLTS_TO_VOLTS = 1e-6
BRAINFLOW_BUFFER_SAMPLES = 450_000
#: How far one chunk's start may be pulled from the sample count's clock toward BrainFlow's
#: timestamps (seconds + fraction of the previous chunk's duration). Kept well inside the
#: platform's per-chunk timing tolerance (``session.TIMING_TOLERANCE_*``: 0.15 s + 5 %).
CLOCK_SLEW_SECONDS = 0.05
CLOCK_SLEW_FRACTION = 0.02

__all__ = [
    "Acquisition",
    "BoardSource",
    "BrainFlowSource",
    "ChannelLayout",
    "DataChunk",
    "Gap",
]


class BoardSource(Protocol):
    """What the bridge needs from a board: the one small interface to implement.

    ``read`` returns BrainFlow's full data array (n_rows, n_new) in BrainFlow units and
    drains the board's buffer; it raises :class:`DeviceError` when the board fails.
    """

    layout: BoardInfo
    finite: bool

    def open(self) -> None: ...

    def read(self) -> NDArray[np.float64]: ...

    def insert_marker(self, code: float) -> None: ...

    def close(self) -> None: ...


class BrainFlowSource:
    """Any BrainFlow board (real, synthetic or playback) behind :class:`BoardSource`."""

    def __init__(self, spec: BoardSpec) -> None:
        self.spec = spec
        self.layout = spec.data_board
        self.finite = spec.board.board_id == BoardIds.PLAYBACK_FILE_BOARD.value
        self._shim: BoardShim | None = None
        if self.layout.sampling_rate is None or not self.layout.eeg_channels:
            raise ConfigurationError(f"board {self.layout.short_name!r} has no EEG description in BrainFlow")
        BoardShim.disable_board_logger()

    def open(self) -> None:
        shim = BoardShim(self.spec.board.board_id, self.spec.input_params())
        try:
            shim.prepare_session()
            if self.finite:
                # stamp samples with the time they are replayed, as a live board would
                shim.config_board("new_timestamps")
            shim.start_stream(BRAINFLOW_BUFFER_SAMPLES)
        except BrainFlowError as err:
            _release_quietly(shim)
            raise BoardConnectionError(
                f"cannot start board {self.spec.board.short_name!r}: {err}", err.exit_code
            ) from err
        self._shim = shim

    def read(self) -> NDArray[np.float64]:
        if self._shim is None:
            raise DeviceError("board is not open")
        try:
            return np.asarray(self._shim.get_board_data(), dtype=np.float64)
        except BrainFlowError as err:
            raise BoardConnectionError(f"board read failed: {err}", err.exit_code) from err

    def insert_marker(self, code: float) -> None:
        if self._shim is None:
            raise DeviceError("board is not open")
        try:
            self._shim.insert_marker(code)
        except BrainFlowError as err:
            raise BoardConnectionError(f"cannot insert marker: {err}", err.exit_code) from err

    def close(self) -> None:
        shim, self._shim = self._shim, None
        if shim is not None:
            _release_quietly(shim)


def _release_quietly(shim: BoardShim) -> None:
    # Closing a board that has already failed raises again; the failure was reported.
    for step in (shim.stop_stream, shim.release_session):
        try:
            step()
        except BrainFlowError as err:
            logger.debug("ignored while closing board: %s", err)


@dataclass(frozen=True, slots=True)
class ChannelLayout:
    """Which BrainFlow rows become which channels, with names, types and units."""

    rows: tuple[int, ...]
    names: tuple[str, ...]
    types: tuple[str, ...]
    units: tuple[str, ...]
    scale: NDArray[np.float64]
    timestamp_row: int | None
    marker_row: int | None

    @classmethod
    def from_board(cls, board: BoardInfo) -> ChannelLayout:
        """EEG rows (µV → V) then accelerometer rows (g, unchanged)."""
        eeg = board.eeg_channels
        names = board.eeg_names if len(board.eeg_names) == len(eeg) else tuple(f"EEG{i + 1}" for i in range(len(eeg)))
        accel = board.accel_channels
        accel_names = (
            tuple(f"ACC_{axis}" for axis in "XYZ")[: len(accel)]
            if len(accel) <= 3
            else tuple(f"ACC{i + 1}" for i in range(len(accel)))
        )
        return cls(
            rows=eeg + accel,
            names=names + accel_names,
            types=("eeg",) * len(eeg) + ("misc",) * len(accel),
            units=("V",) * len(eeg) + ("g",) * len(accel),
            scale=np.array([MICROVOLTS_TO_VOLTS] * len(eeg) + [1.0] * len(accel)),
            timestamp_row=board.timestamp_channel,
            marker_row=board.marker_channel,
        )


@dataclass(frozen=True, slots=True)
class Gap:
    """Data that never arrived: between ``last_ns`` (last good sample) and ``resume_ns``."""

    last_ns: int
    resume_ns: int
    reason: str

    @property
    def missing_seconds(self) -> float:
        return (self.resume_ns - self.last_ns) / 1e9


@dataclass(frozen=True, slots=True)
class DataChunk:
    """A contiguous, fixed-duration piece of the stream ready to be signed.

    ``samples`` has shape (n_channels, n_times) in the layout's units (volts for EEG);
    ``markers`` are (sample index within the chunk, code, label); ``gap`` describes data
    missing just before this chunk, if any.
    """

    t0_ns: int
    samples: NDArray[np.float64]
    markers: tuple[tuple[int, int, str], ...]
    gap: Gap | None = None


@dataclass
class _Events:
    gaps: list[tuple[int, Gap]] = field(default_factory=list)  # (absolute position, gap)
    ended: str | None = None
    faults: int = 0
    reconnects: int = 0


class Acquisition:
    """Acquire from a :class:`BoardSource` in a background thread.

    Parameters
    ----------
    source : BoardSource
        The board.
    buffer_seconds : float
        Ring buffer length in seconds.
    stall_timeout : float
        Seconds without new samples after which the board is considered failed.
    poll_interval : float
        Seconds between reads from the board.
    backoff_initial, backoff_max : float
        Reconnection delays in seconds (doubling from initial up to max).
    give_up_after : float
        Seconds of continuous outage after which the stream ends as disconnected.
    """

    def __init__(
        self,
        source: BoardSource,
        *,
        buffer_seconds: float = 60.0,
        stall_timeout: float = 1.0,
        poll_interval: float = 0.02,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        give_up_after: float = 60.0,
    ) -> None:
        if stall_timeout <= poll_interval:
            raise ConfigurationError(f"stall_timeout ({stall_timeout}) must exceed poll_interval ({poll_interval})")
        self.source = source
        self.layout = ChannelLayout.from_board(source.layout)
        assert source.layout.sampling_rate is not None
        self.sfreq = float(source.layout.sampling_rate)
        self._stall_timeout = stall_timeout
        self._poll = poll_interval
        self._backoff = (backoff_initial, backoff_max)
        self._give_up_after = give_up_after
        n_rows = len(self.layout.rows) + 2  # channels, timestamp (s), marker code
        self.buffer = RingBuffer(n_rows, max(1, int(buffer_seconds * self.sfreq)))
        self._events = _Events()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._marker_labels: dict[int, str] = {}
        self._last_ts: float | None = None
        #: wall-clock (monotonic) time each fault was noticed, for diagnostics and tests
        self.fault_log: list[tuple[float, str]] = []

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        """Open the board and start the acquisition thread (raises if it cannot open)."""
        self.source.open()
        self._thread = threading.Thread(target=self._run, name="mindprint-acquisition", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the board; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.source.close()
        with self._lock:
            if self._events.ended is None:
                self._events.ended = "stopped"

    def __enter__(self) -> Acquisition:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ended(self) -> str | None:
        """Why the stream ended (``None`` while it runs)."""
        with self._lock:
            return self._events.ended

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"faults": self._events.faults, "reconnects": self._events.reconnects}

    # -- markers -------------------------------------------------------------------
    def insert_marker(self, label: str) -> int:
        """Mark the current sample with ``label``; returns its numeric code.

        BrainFlow writes the code into the marker row of the next sample it acquires,
        so the marker lands on the sample recorded when it was inserted.
        """
        if not label:
            raise ConfigurationError("marker label must be a non-empty string")
        with self._lock:
            code = next((c for c, text in self._marker_labels.items() if text == label), None)
            if code is None:
                code = len(self._marker_labels) + 1
                self._marker_labels[code] = label
        self.source.insert_marker(float(code))
        return code

    def marker_label(self, code: int) -> str:
        with self._lock:
            return self._marker_labels.get(code, str(code))

    # -- thread --------------------------------------------------------------------
    def _run(self) -> None:
        last_data = time.monotonic()
        while not self._stop.is_set():
            try:
                raw = self.source.read()
            except DeviceError as err:
                if not self._recover(f"board error: {err}"):
                    return
                last_data = time.monotonic()
                continue
            if raw.ndim == 2 and raw.shape[1]:
                self._ingest(raw)
                last_data = time.monotonic()
            elif time.monotonic() - last_data > self._stall_timeout:
                if self.source.finite:
                    self._end("file ended")
                    return
                if not self._recover(f"no data for {self._stall_timeout:g} s"):
                    return
                last_data = time.monotonic()
            self._stop.wait(self._poll)

    def _ingest(self, raw: NDArray[np.float64]) -> None:
        layout = self.layout
        n = raw.shape[1]
        block = np.empty((len(layout.rows) + 2, n))
        block[:-2] = raw[list(layout.rows)] * layout.scale[:, None]
        if layout.timestamp_row is not None:
            block[-2] = raw[layout.timestamp_row]
        else:  # no device clock: stamp with arrival time, spaced at the nominal rate
            block[-2] = time.time() - (n - 1 - np.arange(n)) / self.sfreq
        block[-1] = raw[layout.marker_row] if layout.marker_row is not None else 0.0
        self.buffer.write(block)
        self._last_ts = float(block[-2, -1])

    def _end(self, reason: str) -> None:
        logger.info("stream ended: %s", reason)
        with self._lock:
            self._events.ended = reason

    def _recover(self, reason: str) -> bool:
        noticed = time.monotonic()
        self.fault_log.append((noticed, reason))
        logger.warning("board fault (%s); reconnecting", reason)
        with self._lock:
            self._events.faults += 1
        self.source.close()
        delay, delay_max = self._backoff
        while not self._stop.is_set():
            if time.monotonic() - noticed > self._give_up_after:
                self._end(f"disconnected: {reason}; gave up after {self._give_up_after:g} s")
                return False
            self._stop.wait(delay)
            try:
                self.source.open()
            except DeviceError as err:
                logger.warning("reconnect failed: %s (next try in %.1f s)", err, min(delay * 2, delay_max))
                delay = min(delay * 2, delay_max)
                continue
            with self._lock:
                self._events.reconnects += 1
                if self._last_ts is not None:
                    # position of the first post-outage sample: the gap precedes it
                    self._events.gaps.append((self.buffer.head, Gap(int(self._last_ts * 1e9), 0, reason)))
            logger.info("board reconnected after %.2f s", time.monotonic() - noticed)
            return True
        return False

    # -- reading -------------------------------------------------------------------
    def chunks(self, chunk_seconds: float, *, until: float | None = None) -> Iterator[DataChunk]:
        """Yield fixed-duration chunks as they fill, until the stream ends.

        Parameters
        ----------
        chunk_seconds : float
            Chunk duration; each chunk has ``round(chunk_seconds * sfreq)`` samples,
            except the one before a gap and the last one.
        until : float | None
            Stop after this many seconds of samples (``None``: until the stream ends).
        """
        assembler = ChunkAssembler(self.sfreq, max(1, round(chunk_seconds * self.sfreq)), self.marker_label)
        limit = None if until is None else int(round(until * self.sfreq))
        cursor = 0
        delivered = 0
        while True:
            ended = self.ended
            read = self.buffer.read_since(cursor)
            with self._lock:
                gaps = [(pos, gap) for pos, gap in self._events.gaps if cursor <= pos < read.end]
            if read.lost:
                first_ts = read.data[-2, 0] if read.data.shape[1] else time.time()
                assembler.add_gap(Gap(0, int(first_ts * 1e9), f"reader overrun: {read.lost} samples lost"))
            data = read.data
            if limit is not None:
                data = data[:, : max(0, limit - delivered)]
            taken = data.shape[1]
            offset = read.start
            for pos, gap in gaps:
                cut = pos - offset
                if cut > data.shape[1]:
                    break
                yield from assembler.add(data[:, :cut])
                data = data[:, cut:]
                offset = pos
                assembler.add_gap(gap)
            yield from assembler.add(data)
            delivered += taken
            cursor = read.end
            if (limit is not None and delivered >= limit) or (ended is not None and read.data.shape[1] == 0):
                yield from assembler.flush()
                return
            self._stop.wait(self._poll)


class ChunkAssembler:
    """Cut a stream of (channels + timestamp + marker) blocks into chunks.

    A chunk's start time is a device clock that advances by the sample count, pulled toward
    BrainFlow's timestamps by at most ``CLOCK_SLEW_SECONDS + CLOCK_SLEW_FRACTION`` x the
    previous chunk's duration per chunk. BrainFlow stamps samples with the host's time when
    they arrive (brainflow-dev/brainflow#763): a Bluetooth board delivers in bursts and a
    playback board whose thread was starved emits its backlog with nearly one timestamp, so a
    chunk stamped with its first sample's raw timestamp may start 2 ms after a predecessor that
    holds 0.5 s. The slewed clock follows the board's real rate (the platform's whole-session
    rate check still sees a board that runs fast or slow) without passing on the bursts; after
    a gap it is re-anchored to BrainFlow's timestamps. A gap is data lost, not data late (see
    :meth:`add`).
    """

    def __init__(self, sfreq: float, chunk_samples: int, label_for: object) -> None:
        self.sfreq = sfreq
        self.chunk_samples = chunk_samples
        self._label_for = label_for
        self._pending: list[NDArray[np.float64]] = []
        self._pending_n = 0
        self._gap: Gap | None = None
        self._gap_pending: Gap | None = None
        self._line: float | None = None  # the stamps' lower envelope, at the next block's first sample
        self._held: NDArray[np.float64] | None = None  # a late, bunched stretch waiting for more
        self._declared: Gap | None = None  # a gap declared by the caller, before the next block
        self._clock: float | None = None  # device-clock time (s) of the next chunk's first sample
        self._slew = CLOCK_SLEW_SECONDS
        # a jump in device timestamps larger than this is data lost without a fault
        self._jump_seconds = max(0.25, 10.0 / sfreq)

    def add_gap(self, gap: Gap) -> None:
        """Declare that data is missing before the next sample :meth:`add` receives."""
        self._declared = gap

    def add(self, block: NDArray[np.float64]) -> Iterator[DataChunk]:
        """Append ``block`` (channels + timestamp + marker rows); yield full chunks.

        Data lost without a fault (a board that dropped samples, between reads or inside one)
        is a gap wherever it falls: the block is cut there. It is told from samples that only
        arrived late by the stamps' lower envelope (stamp minus sample count over the rate,
        the smallest from each sample on): a lost stretch moves it forward for good; a backlog
        stamped at once does not, by its last samples — so a late stretch whose stamps are
        bunched (a backlog still arriving) waits for the next block before it is judged."""
        if block.shape[1] == 0:
            return
        if self._held is not None:
            held, self._held = self._held, None
            if self._declared is None:
                block = np.concatenate([held, block], axis=1)
            else:  # a fault came after the held samples: nothing more will tell
                yield from self._settle(held, final=True)
        if self._declared is not None:
            self._gap_pending, self._declared = self._declared, None
        yield from self._settle(block, final=False)

    def _settle(self, block: NDArray[np.float64], *, final: bool) -> Iterator[DataChunk]:
        n = block.shape[1]
        offsets = block[-2] - np.arange(n) / self.sfreq  # each sample's implied start of the block
        envelope = np.minimum.accumulate(offsets[::-1])[::-1]  # the smallest from each sample on
        if self._line is None:
            self._line = float(envelope[0])
        start, done = 0, n
        while True:
            late = envelope[start:] - self._line > self._jump_seconds
            cut = start + int(np.argmax(late)) if late.any() else n
            if cut > start:
                yield from self._add(block[:, start:cut])
            if cut == n:
                break
            stamps = block[-2, cut:]
            if not final and stamps[-1] - stamps[0] < 0.5 * (n - 1 - cut) / self.sfreq:
                self._held, done = block[:, cut:], cut  # bunched: judged with the next block
                break
            jump = float(envelope[cut]) - self._line
            if self._gap_pending is None:
                self._gap_pending = Gap(0, 0, f"device timestamps jump by {jump:.3f} s")
            self._line, start = float(envelope[cut]), cut
        # follow a board whose rate is a little off (up at most 5 % of the time elapsed), come
        # back from a late anchor at once (stamps are never earlier than their samples), and
        # move to the first sample not yet taken
        if done > start:
            drift = float(envelope[start]) - self._line
            self._line += min(drift, 0.05 * (done - start) / self.sfreq)
        self._line += done / self.sfreq

    def _add(self, block: NDArray[np.float64]) -> Iterator[DataChunk]:
        gap = self._gap_pending
        if gap is not None:
            self._gap_pending = None
            yield from self.flush()
            self._gap = gap  # timed by _make, on the device clock
        self._pending.append(block)
        self._pending_n += block.shape[1]
        while self._pending_n >= self.chunk_samples:
            joined = np.concatenate(self._pending, axis=1)
            yield self._make(joined[:, : self.chunk_samples])
            rest = joined[:, self.chunk_samples :]
            self._pending = [rest] if rest.shape[1] else []
            self._pending_n = rest.shape[1]

    def flush(self) -> Iterator[DataChunk]:
        if self._held is not None:
            held, self._held = self._held, None
            yield from self._settle(held, final=True)
        if self._pending_n:
            joined = np.concatenate(self._pending, axis=1)
            self._pending, self._pending_n = [], 0
            yield self._make(joined)

    def _make(self, block: NDArray[np.float64]) -> DataChunk:
        label_for = self._label_for
        codes = block[-1]
        markers = tuple(
            (int(i), int(codes[i]), label_for(int(codes[i])))  # type: ignore[operator]
            for i in np.flatnonzero(codes)
        )
        n = block.shape[1]
        # BrainFlow's estimate of the first sample's time: a sample is stamped when it arrives,
        # never before it was recorded, so the earliest start its stamps allow (their lower
        # envelope) is the best one; with a device's own clock it is the first stamp
        raw, clock, gap = float(np.min(block[-2] - np.arange(n) / self.sfreq)), self._clock, self._gap
        if clock is None:  # the first chunk: BrainFlow's timestamp (a gap before it keeps its last_ns)
            t0 = raw
            last_ns = gap.last_ns if gap is not None else 0
        elif gap is not None:  # re-anchored, never before the last delivered sample
            t0 = max(raw, clock)
            last_ns = int(round((clock - 1.0 / self.sfreq) * 1e9))
        else:
            t0 = clock + min(max(raw - clock, -self._slew), self._slew)
        if gap is not None:  # the gap ends at this chunk's first sample
            gap = Gap(last_ns, int(round(t0 * 1e9)), gap.reason)
        self._clock = t0 + n / self.sfreq
        self._slew = CLOCK_SLEW_SECONDS + CLOCK_SLEW_FRACTION * n / self.sfreq
        chunk = DataChunk(
            t0_ns=int(round(t0 * 1e9)),
            samples=np.ascontiguousarray(block[:-2]),
            markers=markers,
            gap=gap,
        )
        self._gap = None
        return chunk
