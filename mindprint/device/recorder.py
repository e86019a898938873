"""Record a board into a signed session: the glue between the bridge and the writer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from mindprint.core.errors import SessionError
from mindprint.core.ipld import CID
from mindprint.device.bridge import Acquisition, BoardSource, DataChunk, Gap
from mindprint.device.keys import DeviceKey
from mindprint.device.session import SessionWriter, WrittenChunk

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """What a finished recording produced."""

    path: Path
    session: str
    chunks: int
    samples: int
    seconds: float
    first_cid: str | None
    last_cid: str | None
    gaps: int
    faults: int
    reconnects: int
    ended: str


ChunkCallback = Callable[[int, CID, DataChunk, Acquisition], None]


def record_session(
    source: BoardSource,
    out: Path,
    key: DeviceKey,
    *,
    duration: float | None,
    chunk_seconds: float = 1.0,
    on_chunk: ChunkCallback | None = None,
    on_start: Callable[[Acquisition], None] | None = None,
    acquisition_options: dict[str, float] | None = None,
    fsync: bool = True,
    resume: bool = False,
    on_open: Callable[[SessionWriter], None] | None = None,
    on_written: Callable[[WrittenChunk], None] | None = None,
) -> RecordingSummary:
    """Acquire from ``source`` and append signed chunks to a new session in ``out``.

    Parameters
    ----------
    source : BoardSource
        The board (see :class:`~mindprint.device.bridge.BrainFlowSource`).
    out : Path
        New session directory.
    key : DeviceKey
        The device key that signs every chunk.
    duration : float | None
        Seconds of samples to record; ``None`` records until the stream ends.
    chunk_seconds : float
        Chunk duration in seconds.
    on_chunk : callable, optional
        Called after each chunk is durable, with (seq, cid, chunk, acquisition).
    on_start : callable, optional
        Called with the running acquisition (to insert markers from another thread).
    on_open : callable, optional
        Called once with the session writer (header block and signature) before acquisition.
    on_written : callable, optional
        Called after each chunk is durable with its bytes, signature and file position
        (what the companion streams, without reading the file back).
    resume : bool
        Append to the existing session in ``out`` (e.g. after a crash) instead of
        creating one; the time between its last sample and the first new one is
        recorded as a gap.
    """
    acquisition = Acquisition(source, **(acquisition_options or {}))
    layout = acquisition.layout
    if resume:
        writer = SessionWriter.resume(out, key, fsync=fsync)
        if writer.header.channels != layout.names or writer.header.sfreq != acquisition.sfreq:
            writer.close()
            raise SessionError(
                f"cannot resume: the session has {len(writer.header.channels)} channels at {writer.header.sfreq:g} Hz, "
                f"the board {len(layout.names)} at {acquisition.sfreq:g} Hz"
            )
    else:
        writer = _create(out, key, source, acquisition, chunk_seconds, fsync)
    resumed_after = writer.last_sample_ns
    first: CID | None = None
    gaps = 0
    samples_before = writer.samples_written
    if on_open is not None:
        on_open(writer)
    with writer, acquisition:
        if on_start is not None:
            on_start(acquisition)
        for chunk in acquisition.chunks(chunk_seconds, until=duration):
            if resumed_after is not None:
                if chunk.gap is None:
                    chunk = replace(chunk, gap=Gap(resumed_after, chunk.t0_ns, "session resumed"))
                resumed_after = None
            seq = writer.next_seq
            cid = writer.append(chunk)
            first = first or cid
            gaps += chunk.gap is not None
            if on_written is not None and writer.last_written is not None:
                on_written(writer.last_written)
            if on_chunk is not None:
                on_chunk(seq, cid, chunk, acquisition)
        ended = acquisition.ended or "duration reached"
        stats = acquisition.stats
    written = writer.samples_written - samples_before
    return RecordingSummary(
        path=out,
        session=writer.header.session,
        chunks=writer.next_seq,
        samples=written,
        seconds=written / acquisition.sfreq,
        first_cid=str(first) if first else None,
        last_cid=str(writer.last_cid) if first else None,
        gaps=gaps,
        faults=stats["faults"],
        reconnects=stats["reconnects"],
        ended=ended if duration is None or written < duration * acquisition.sfreq else "duration reached",
    )


def _create(
    out: Path, key: DeviceKey, source: BoardSource, acquisition: Acquisition, chunk_seconds: float, fsync: bool
) -> SessionWriter:
    layout = acquisition.layout
    return SessionWriter.create(
        out,
        key,
        board_id=source.layout.board_id,
        board_name=source.layout.name,
        sfreq=acquisition.sfreq,
        channels=layout.names,
        types=layout.types,
        units=layout.units,
        chunk_seconds=chunk_seconds,
        fsync=fsync,
    )
