"""Streaming a session to the platform while it is recorded.

:class:`ChunkIndex` is the companion's in-memory index of what it has written (seq, CID,
file position, device time, markers; the decoded chunks of the last minute), fed by the
recorder's ``on_written`` hook — the session file is never read back while recording.

:class:`ChunkUploader` sends each chunk once, encrypted on the device: a background
thread seals it under the session's data key (ChaCha20-Poly1305; the key travels once,
HPKE-wrapped for the platform's public key) and ``PUT``s it with the device's signature
over the plaintext CID. While the platform is unreachable the chunks wait on disk (the
session file) and the thread retries with backoff; the recording never waits for it.
After a restart :meth:`ChunkUploader.start` asks the platform which seqs it holds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multiformats import CID

from mindprint.companion.client import PlatformClient, PlatformError, PlatformUnavailable
from mindprint.core.ipld import cid_text, decode_block, read_car
from mindprint.device.session import SESSION_FILE, SessionHeader, SessionWriter, WrittenChunk
from mindprint.ledger.crypto import new_data_key, wrap_key
from mindprint.protocol.formats import seal_chunk

logger = logging.getLogger(__name__)

__all__ = ["ChunkIndex", "ChunkUploader", "IndexedChunk", "upload_recorded"]

#: seconds of decoded chunks kept in memory for cutting epochs
KEEP_SECONDS = 60.0


RECENT_GAPS = 32


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    seq: int
    cid: CID
    offset: int
    length: int
    t0_ns: int
    n_times: int
    signature: bytes


class ChunkIndex:
    """What the companion has written, in memory (thread-safe; fed by ``on_written``)."""

    def __init__(self, path: Path, keep_seconds: float = KEEP_SECONDS) -> None:
        self.path = path
        self.keep_seconds = keep_seconds
        self.header: SessionHeader | None = None
        self.header_block = b""
        self.header_signature = b""
        self.entries: list[IndexedChunk] = []
        self.markers: list[tuple[int, str]] = []  # (device time ns, label), in order
        # the latest declared gaps: (last good sample, resume), device ns — a trial asks about
        # the last few seconds only, so a long, flaky session does not make the question dearer
        self.gaps: deque[tuple[int, int]] = deque(maxlen=RECENT_GAPS)
        self._recent: deque[tuple[int, CID, bytes, dict[str, Any]]] = deque()
        self._recent_samples = 0
        self.changed = threading.Condition()

    def opened(self, writer: SessionWriter) -> None:
        with self.changed:
            self.header = writer.header
            self.header_block = writer.header_block
            self.header_signature = writer.header_signature
            self.changed.notify_all()

    def written(self, chunk: WrittenChunk) -> None:
        assert self.header is not None
        sfreq = self.header.sfreq
        with self.changed:
            self.entries.append(
                IndexedChunk(
                    chunk.seq, chunk.cid, chunk.offset, chunk.length, chunk.t0_ns, chunk.n_times, chunk.signature
                )
            )
            for index, label in chunk.markers:
                self.markers.append((chunk.t0_ns + round(index / sfreq * 1e9), label))
            value = dict(decode_block(chunk.block))
            if value.get("gap"):
                self.gaps.append((int(value["gap"]["last_ns"]), int(value["gap"]["resume_ns"])))
            self._recent.append((chunk.seq, chunk.cid, chunk.block, value))
            self._recent_samples += chunk.n_times
            while len(self._recent) > 1 and self._recent_samples / sfreq > max(self.keep_seconds, 1.0):
                self._recent_samples -= int(self._recent.popleft()[3]["samples"]["shape"][1])
            self.changed.notify_all()

    @property
    def count(self) -> int:
        with self.changed:
            return len(self.entries)

    def recorded_until_ns(self) -> int:
        """Device time just after the last sample written (0 before the first chunk)."""
        with self.changed:
            if not self.entries or self.header is None:
                return 0
            last = self.entries[-1]
            return last.t0_ns + round(last.n_times / self.header.sfreq * 1e9)

    def samples_from(self, t_ns: int) -> int:
        """Samples held from the start of the chunk that covers device time ``t_ns`` on."""
        with self.changed:
            if self.header is None:
                return 0
            held = 0
            for entry in reversed(self.entries):
                held += entry.n_times
                if entry.t0_ns <= t_ns:
                    return held - round((t_ns - entry.t0_ns) / 1e9 * self.header.sfreq)
            return 0

    def gap_after(self, t_ns: int) -> tuple[int, int] | None:
        """The first declared gap the recording resumed from after device time ``t_ns``."""
        with self.changed:
            return next(((last, resume) for last, resume in self.gaps if resume > t_ns), None)

    def marker_count(self) -> int:
        with self.changed:
            return len(self.markers)

    def find_marker(self, label: str, start: int) -> int | None:
        """Device time of the first ``label`` marker at or after position ``start``."""
        with self.changed:
            for at, name in self.markers[start:]:
                if name == label:
                    return at
        return None

    def find_markers(self, label: str, start: int) -> list[int]:
        """Device times of every ``label`` marker at or after position ``start``."""
        with self.changed:
            return [at for at, name in self.markers[start:] if name == label]

    def recent_chunks(self) -> list[tuple[CID, dict[str, Any]]]:
        """The decoded chunks still in memory, consecutive and in order."""
        with self.changed:
            return [(cid, value) for _, cid, _, value in self._recent]

    def block(self, seq: int) -> bytes:
        """A chunk's bytes: from memory, else one positioned read of its CAR section."""
        with self.changed:
            for held_seq, _, block, _ in self._recent:
                if held_seq == seq:
                    return block
            entry = self.entries[seq]
        with open(self.path / SESSION_FILE, "rb") as handle:
            section = os.pread(handle.fileno(), entry.length, entry.offset)
        # a CAR section is varint(length) || CID || block; the CID is the one we wrote
        varint = next(i for i, byte in enumerate(section) if byte < 0x80) + 1
        raw = bytes(entry.cid)
        if section[varint : varint + len(raw)] != raw:
            raise PlatformError(f"chunk {seq} is not at its recorded position in {self.path / SESSION_FILE}")
        return section[varint + len(raw) :]


class ChunkUploader:
    """Send every chunk of a session once, encrypted, in order, in a background thread."""

    def __init__(self, client: PlatformClient, index: ChunkIndex, platform_key: bytes) -> None:
        self.client = client
        self.index = index
        self.platform_key = platform_key
        self.data_key = new_data_key()
        self.sent = 0  # the platform holds seqs 0 … sent − 1
        self.bytes_sent = 0
        self.error: BaseException | None = None
        self.outages = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def session(self) -> str:
        assert self.index.header is not None
        return self.index.header.session

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mindprint-upload", daemon=True)
        self._thread.start()

    def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop after sending what is written (waiting at most ``drain_seconds``)."""
        deadline = time.monotonic() + drain_seconds
        while self.sent < self.index.count and self.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        with self.index.changed:
            self.index.changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait_sent(self, seq: int, timeout: float) -> None:
        """Block until the platform holds chunk ``seq`` (raises on error or timeout)."""
        deadline = time.monotonic() + timeout
        while self.sent <= seq:
            if self.error is not None:
                raise PlatformError(f"streaming the session failed: {self.error}")
            if time.monotonic() > deadline:
                raise PlatformUnavailable(f"chunk {seq} not uploaded after {timeout:.0f} s")
            time.sleep(0.05)

    def _retry(self, action: Any) -> Any:
        delay = 0.2
        while not self._stop.is_set():
            try:
                return action()
            except PlatformUnavailable as err:
                self.outages += 1
                logger.warning("platform unavailable (%s); retrying in %.1f s", err, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        return None

    def _run(self) -> None:
        try:
            with self.index.changed:
                while self.index.header is None and not self._stop.is_set():
                    self.index.changed.wait(0.5)
            if self._stop.is_set():
                return
            wrapped = wrap_key(self.data_key, self.platform_key, self.session)
            state = self._retry(
                lambda: self.client.open_session(self.index.header_block, self.index.header_signature, wrapped)
            )
            if state is None:
                return
            self.sent = int(state["next_seq"])
            while not self._stop.is_set():
                with self.index.changed:
                    if self.sent >= len(self.index.entries):
                        self.index.changed.wait(0.5)
                        continue
                    entry = self.index.entries[self.sent]
                envelope = seal_chunk(self.data_key, self.session, entry.cid, self.index.block(entry.seq))
                answer = self._retry(
                    lambda e=entry, env=envelope: self.client.put_chunk(
                        self.session, e.seq, cid_text(e.cid), e.signature, env
                    )
                )
                if answer is None:
                    return
                self.bytes_sent += len(envelope)
                self.sent = max(self.sent, int(answer["next_seq"]))
        except BaseException as err:  # surfaced to the labeling run by wait_sent
            logger.error("session upload stopped: %s", err)
            self.error = err


def upload_recorded(client: PlatformClient, path: Path, platform_key: bytes) -> dict[str, Any]:
    """Stream a finished session directory to the platform (one read of its file; resumable).

    For recordings made offline: only chunks whose signature is in the file are sent,
    from the first seq the platform does not hold yet. Returns the platform's state.
    """
    from mindprint.device.session import CHUNK_TYPE, SIGNATURE_TYPE

    contents = read_car((path / SESSION_FILE).read_bytes())
    if not contents.sections:
        raise PlatformError(f"{path} holds no session")
    header_block = contents.sections[0].block
    signatures: dict[CID, bytes] = {}
    chunks: list[tuple[CID, bytes]] = []
    for section in contents.sections[1:]:
        value = decode_block(section.block)
        if isinstance(value, dict) and value.get("type") == SIGNATURE_TYPE and isinstance(value.get("signs"), CID):
            signatures[value["signs"]] = bytes(value["signature"])
        elif isinstance(value, dict) and value.get("type") == CHUNK_TYPE:
            chunks.append((section.cid, section.block))
    header = SessionHeader.from_block(decode_block(header_block))
    data_key = new_data_key()
    state = client.open_session(
        header_block, signatures[contents.sections[0].cid], wrap_key(data_key, platform_key, header.session)
    )
    for seq, (cid, block) in enumerate(chunks):
        if seq < int(state["next_seq"]) or cid not in signatures:
            continue
        envelope = seal_chunk(data_key, header.session, cid, block)
        state = client.put_chunk(header.session, seq, cid_text(cid), signatures[cid], envelope)
    return state
