"""Signed, hash-chained session files.

A session is one append-only CARv1 file, ``session.car``, in its own directory::

    CAR header   roots = [CID of the session header block]
    header       DAG-CBOR {type, session, device, board, sfreq, channels, types, units, ...}
    signature    DAG-CBOR {type, signs: CID(header), alg: "ed25519", signature}
    chunk 0      DAG-CBOR {type, session, seq, t0_ns, sfreq, channels, units, samples,
                           markers, gap, prev: CID(header)}
    signature    {signs: CID(chunk 0), ...}
    chunk 1      {..., prev: CID(chunk 0)}
    ...

Every block is addressed by its CIDv1 (dag-cbor, sha2-256), the device key signs each
block's binary CID, and each chunk links the previous one, so a flipped byte, a dropped,
reordered or repeated chunk, a replaced signature or a sample rate that disagrees with
the device clock is each detectable (:func:`verify_session`). A chunk and its signature
are written with one ``write`` and fsynced: a process killed mid-write leaves at most a
partial tail, which readers report and :meth:`SessionWriter.resume` truncates.

Samples are little-endian float32 in volts (EEG) and g (accelerometer), shape
(n_channels, n_times).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mindprint import __version__
from mindprint.core.errors import SessionError, SessionFormatError
from mindprint.core.ipld import (
    CID,
    SIGNATURE_TYPE,
    car_header,
    car_section,
    cid_for_block,
    decode_block,
    encode_block,
    read_car,
    signature_block,
)
from mindprint.device.bridge import DataChunk
from mindprint.device.keys import DeviceKey, verify_signature

logger = logging.getLogger(__name__)

SESSION_FILE = "session.car"
HEADER_TYPE = "mindprint/session/v1"
CHUNK_TYPE = "mindprint/chunk/v1"
SAMPLE_DTYPE = "<f4"

#: chunk-to-chunk timing tolerance: absolute seconds and fraction of the chunk duration
TIMING_TOLERANCE_SECONDS = 0.15
TIMING_TOLERANCE_FRACTION = 0.05
#: whole-session sample rate tolerance (samples / device-clock seconds vs sfreq)
RATE_TOLERANCE = 0.03

__all__ = [
    "Issue",
    "SessionHeader",
    "SessionReport",
    "SessionWriter",
    "WrittenChunk",
    "check_rate",
    "check_timing",
    "chunk_samples",
    "epoch_gaps",
    "iter_chunks",
    "read_eeg",
    "read_header",
    "signature_block",
    "verify_session",
]


@dataclass(frozen=True, slots=True)
class SessionHeader:
    """What a session declares about itself (the signed header block)."""

    session: str
    device: bytes
    board_id: int
    board_name: str
    sfreq: float
    channels: tuple[str, ...]
    types: tuple[str, ...]
    units: tuple[str, ...]
    created_ns: int
    chunk_seconds: float
    software: str = f"mindprint {__version__}"

    @property
    def eeg_rows(self) -> list[int]:
        """Indices of the EEG channels (the others are accelerometer etc.)."""
        return [i for i, kind in enumerate(self.types) if kind == "eeg"]

    @property
    def eeg_names(self) -> list[str]:
        return [self.channels[i] for i in self.eeg_rows]

    def to_block(self) -> dict[str, Any]:
        return {
            "type": HEADER_TYPE,
            "session": self.session,
            "device": self.device,
            "board": {"id": self.board_id, "name": self.board_name},
            "sfreq": float(self.sfreq),
            "channels": list(self.channels),
            "types": list(self.types),
            "units": list(self.units),
            "created_ns": self.created_ns,
            "chunk_seconds": float(self.chunk_seconds),
            "software": self.software,
        }

    @classmethod
    def from_block(cls, block: Any) -> SessionHeader:
        try:
            if block["type"] != HEADER_TYPE:
                raise SessionFormatError(f"first block has type {block['type']!r}, expected {HEADER_TYPE!r}")
            return cls(
                session=str(block["session"]),
                device=bytes(block["device"]),
                board_id=int(block["board"]["id"]),
                board_name=str(block["board"]["name"]),
                sfreq=float(block["sfreq"]),
                channels=tuple(block["channels"]),
                types=tuple(block["types"]),
                units=tuple(block["units"]),
                created_ns=int(block["created_ns"]),
                chunk_seconds=float(block["chunk_seconds"]),
                software=str(block["software"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise SessionFormatError(f"malformed session header: {err!r}") from err


def _signature_block(key: DeviceKey, cid: CID) -> bytes:
    return signature_block(cid, key.sign(bytes(cid)))


def chunk_block(header: SessionHeader, seq: int, chunk: DataChunk, prev: CID) -> dict[str, Any]:
    """Build the DAG-CBOR value of one chunk (samples stored as little-endian float32)."""
    samples = np.ascontiguousarray(chunk.samples, dtype=SAMPLE_DTYPE)
    if samples.ndim != 2 or samples.shape[0] != len(header.channels):
        raise SessionError(f"chunk samples must have shape ({len(header.channels)}, n), got {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise SessionError(f"chunk {seq} holds NaN or infinite samples")
    gap = None
    if chunk.gap is not None:
        gap = {"last_ns": chunk.gap.last_ns, "resume_ns": chunk.gap.resume_ns, "reason": chunk.gap.reason}
    return {
        "type": CHUNK_TYPE,
        "session": header.session,
        "seq": seq,
        "t0_ns": int(chunk.t0_ns),
        "sfreq": float(header.sfreq),
        "channels": list(header.channels),
        "units": list(header.units),
        "samples": {"dtype": SAMPLE_DTYPE, "shape": list(samples.shape), "data": samples.tobytes()},
        "markers": [[int(i), int(code), str(label)] for i, code, label in chunk.markers],
        "gap": gap,
        "prev": prev,
    }


def chunk_samples(block: dict[str, Any]) -> NDArray[np.float32]:
    """Return a chunk's samples, shape (n_channels, n_times), without copying.

    Raises
    ------
    SessionFormatError
        If dtype, shape and byte length disagree.
    """
    try:
        spec = block["samples"]
        shape = tuple(int(n) for n in spec["shape"])
        if spec["dtype"] != SAMPLE_DTYPE or len(shape) != 2:
            raise SessionFormatError(f"unsupported sample layout {spec['dtype']!r} {shape}")
        data = bytes(spec["data"])
    except (KeyError, TypeError) as err:
        raise SessionFormatError(f"chunk has no valid samples field: {err!r}") from err
    if len(data) != shape[0] * shape[1] * 4:
        raise SessionFormatError(f"samples hold {len(data)} bytes, shape {shape} needs {shape[0] * shape[1] * 4}")
    return np.frombuffer(data, dtype=SAMPLE_DTYPE).reshape(shape)


def gap_seconds(gap: dict[str, Any]) -> float:
    """The seconds a chunk's gap record says are missing (KeyError, TypeError or ValueError
    if the record is malformed)."""
    return (int(gap["resume_ns"]) - int(gap["last_ns"])) / 1e9


def epoch_gaps(chunks: Sequence[dict[str, Any]]) -> list[str]:
    """Why an epoch cut from ``chunks`` (decoded, consecutive, in order) is not contiguous EEG:
    one reason per chunk after the first that follows a declared gap (the samples on either
    side would be joined as if recorded one after the other). Empty if it is contiguous. The
    platform rejects such a sample; the companion repeats the trial instead of signing it."""
    reasons = []
    for chunk in chunks[1:]:
        gap = chunk.get("gap")
        if gap is None:
            continue
        try:
            missing = f"{gap_seconds(gap):.2f} s are"
        except (KeyError, TypeError, ValueError):
            missing = "data is"
        reasons.append(f"the sample's EEG is not contiguous: {missing} missing before chunk {chunk.get('seq')}")
    return reasons


@dataclass(frozen=True, slots=True)
class WrittenChunk:
    """A chunk just appended: its bytes, device signature and where its CAR section starts."""

    seq: int
    cid: CID
    block: bytes
    signature: bytes
    offset: int  # byte offset of the chunk's CAR section in session.car
    length: int  # length of that section
    t0_ns: int
    n_times: int
    markers: tuple[tuple[int, str], ...]  # (sample index in the chunk, label)


class SessionWriter:
    """Append signed chunks to a session directory.

    Use :meth:`create` for a new session and :meth:`resume` to reopen one (after a crash,
    the partial tail is truncated and the chain continues from the last whole chunk).
    """

    def __init__(
        self, path: Path, key: DeviceKey, header: SessionHeader, prev: CID, next_seq: int, *, fsync: bool
    ) -> None:
        self.path = path
        self.key = key
        self.header = header
        self._prev = prev
        self._seq = next_seq
        self._fsync = fsync
        self._fd = os.open(path / SESSION_FILE, os.O_WRONLY | os.O_APPEND)
        self._offset = os.lseek(self._fd, 0, os.SEEK_END)
        self.samples_written = 0
        #: the block, signature and file position of the last chunk appended
        self.last_written: WrittenChunk | None = None
        #: the header block and its device signature (what a platform session opens with)
        self.header_block = encode_block(header.to_block())
        self.header_cid = cid_for_block(self.header_block)
        # Ed25519 is deterministic: this is the signature block's signature in the file
        self.header_signature = key.sign(bytes(self.header_cid))
        #: device time (ns) of the last sample already in the session, if any
        self.last_sample_ns: int | None = None

    @classmethod
    def create(
        cls,
        path: Path,
        key: DeviceKey,
        *,
        board_id: int,
        board_name: str,
        sfreq: float,
        channels: tuple[str, ...],
        types: tuple[str, ...],
        units: tuple[str, ...],
        chunk_seconds: float,
        fsync: bool = True,
    ) -> SessionWriter:
        """Start a new session in ``path`` (created; must not already hold a session)."""
        path.mkdir(parents=True, exist_ok=True)
        file = path / SESSION_FILE
        if file.exists():
            raise SessionError(f"{file} already exists; use a new directory or resume it")
        header = SessionHeader(
            session=str(uuid.uuid4()),
            device=key.public_key,
            board_id=board_id,
            board_name=board_name,
            sfreq=sfreq,
            channels=channels,
            types=types,
            units=units,
            created_ns=time.time_ns(),
            chunk_seconds=chunk_seconds,
        )
        header_bytes = encode_block(header.to_block())
        header_cid = cid_for_block(header_bytes)
        payload = (
            car_header([header_cid]) + car_section(header_cid, header_bytes) + car_section(*_signed(key, header_cid))
        )
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        logger.info("session %s created in %s", header.session, path)
        return cls(path, key, header, header_cid, 0, fsync=fsync)

    @classmethod
    def resume(cls, path: Path, key: DeviceKey, *, fsync: bool = True) -> SessionWriter:
        """Reopen a session for appending, truncating a partial tail left by a crash."""
        file = path / SESSION_FILE
        try:
            data = file.read_bytes()
        except OSError as err:
            raise SessionError(f"cannot read {file}: {err}") from err
        contents = read_car(data)
        if not contents.sections:
            raise SessionFormatError(f"{file} has no session header")
        header = SessionHeader.from_block(decode_block(contents.sections[0].block))
        if header.device != key.public_key:
            raise SessionError("this session was recorded by another device key")
        header_cid = contents.sections[0].cid
        prev, next_seq, keep = header_cid, 0, contents.sections[0].end
        pending: tuple[CID, int] | None = None  # a chunk whose signature has not been seen yet
        pending_last = 0
        last_sample_ns: int | None = None
        for section in contents.sections[1:]:
            try:
                block = decode_block(section.block)
            except SessionFormatError as err:
                raise SessionFormatError(
                    f"{file} is damaged at byte {section.offset}; run `mindprint session verify`"
                ) from err
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == CHUNK_TYPE:
                pending = (section.cid, int(block["seq"]) + 1)
                pending_last = int(block["t0_ns"]) + round((chunk_samples(block).shape[1] - 1) / header.sfreq * 1e9)
            elif kind == SIGNATURE_TYPE and pending is not None and block.get("signs") == pending[0]:
                (prev, next_seq), pending, keep = pending, None, section.end
                last_sample_ns = pending_last
            elif kind == SIGNATURE_TYPE and block.get("signs") == header_cid:
                keep = section.end
        if keep < len(data):
            logger.warning("truncating %d bytes of unsigned or partial data at the end of %s", len(data) - keep, file)
            with open(file, "r+b") as handle:
                handle.truncate(keep)
        writer = cls(path, key, header, prev, next_seq, fsync=fsync)
        writer.last_sample_ns = last_sample_ns
        return writer

    @property
    def next_seq(self) -> int:
        return self._seq

    @property
    def last_cid(self) -> CID:
        return self._prev

    def append(self, chunk: DataChunk) -> CID:
        """Sign and append one chunk; returns its CID. Durable when this returns."""
        value = chunk_block(self.header, self._seq, chunk, self._prev)
        block = encode_block(value)
        cid = cid_for_block(block)
        signature = self.key.sign(bytes(cid))
        section = car_section(cid, block)
        signed = signature_block(cid, signature)
        signed_section = car_section(cid_for_block(signed), signed)
        os.write(self._fd, section + signed_section)
        if self._fsync:
            os.fsync(self._fd)
        self.last_written = WrittenChunk(
            seq=self._seq,
            cid=cid,
            block=block,
            signature=signature,
            offset=self._offset,
            length=len(section),
            t0_ns=int(chunk.t0_ns),
            n_times=int(chunk.samples.shape[1]),
            markers=tuple((int(i), str(label)) for i, _code, label in chunk.markers),
        )
        self._offset += len(section) + len(signed_section)
        self._prev = cid
        self._seq += 1
        self.samples_written += chunk.samples.shape[1]
        return cid

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _signed(key: DeviceKey, cid: CID) -> tuple[CID, bytes]:
    signature = _signature_block(key, cid)
    return cid_for_block(signature), signature


def _session_bytes(path: Path) -> bytes:
    file = path / SESSION_FILE if path.is_dir() else path
    try:
        return file.read_bytes()
    except OSError as err:
        raise SessionError(f"cannot read session {file}: {err}") from err


def read_header(path: Path) -> SessionHeader:
    """Read a session's header block (not verified; see :func:`verify_session`)."""
    contents = read_car(_session_bytes(path))
    if not contents.sections:
        raise SessionFormatError(f"{path} has no session header")
    return SessionHeader.from_block(decode_block(contents.sections[0].block))


def read_eeg(path: Path) -> tuple[NDArray[np.float64], SessionHeader]:
    """All EEG samples of a session in chunk order, shape (n_eeg, n_times) in volts (no verification)."""
    header = read_header(path)
    blocks = [chunk_samples(block) for _, block in iter_chunks(path)]
    if not blocks:
        raise SessionError(f"session {path} holds no chunks")
    return np.concatenate(blocks, axis=1)[header.eeg_rows].astype(np.float64), header


def iter_chunks(path: Path) -> Iterator[tuple[CID, dict[str, Any]]]:
    """Yield (CID, decoded chunk) in file order, skipping signatures (no verification)."""
    for section in read_car(_session_bytes(path)).sections[1:]:
        block = decode_block(section.block)
        if isinstance(block, dict) and block.get("type") == CHUNK_TYPE:
            yield section.cid, block


# --------------------------------------------------------------------------------------
# verification


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a session: where (chunk seq and position) and why."""

    code: str
    message: str
    seq: int | None = None
    position: int | None = None  # index of the CAR section (0 = header)
    offset: int | None = None  # byte offset in session.car

    def __str__(self) -> str:
        where = f"chunk seq {self.seq}" if self.seq is not None else "session"
        if self.position is not None:
            where += f" (block #{self.position}, byte {self.offset})"
        return f"{where}: [{self.code}] {self.message}"


@dataclass
class SessionReport:
    """Result of :func:`verify_session`. ``ok`` is True when ``issues`` is empty."""

    path: str
    session: str | None = None
    device: str | None = None
    board: str | None = None
    sfreq: float | None = None
    chunks: int = 0
    samples: int = 0
    duration_seconds: float = 0.0
    gaps: list[dict[str, Any]] = field(default_factory=list)
    markers: int = 0
    first_cid: str | None = None
    last_cid: str | None = None
    issues: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "path": self.path,
            "session": self.session,
            "device": self.device,
            "board": self.board,
            "sfreq": self.sfreq,
            "chunks": self.chunks,
            "samples": self.samples,
            "duration_seconds": self.duration_seconds,
            "gaps": self.gaps,
            "markers": self.markers,
            "first_cid": self.first_cid,
            "last_cid": self.last_cid,
            "issues": [
                {"code": i.code, "message": i.message, "seq": i.seq, "position": i.position, "offset": i.offset}
                for i in self.issues
            ],
            "warnings": self.warnings,
        }


def verify_session(path: Path) -> SessionReport:
    """Check a session's CIDs, signatures, chain, sequence numbers and timing.

    Parameters
    ----------
    path : Path
        Session directory (or its ``session.car``).

    Returns
    -------
    SessionReport
        Every problem, each naming the exact chunk (seq and block position) and reason.
        A partial tail left by a crash is a warning, not an issue: everything before it
        still verifies.
    """
    report = SessionReport(path=str(path))
    try:
        contents = read_car(_session_bytes(path))
    except SessionFormatError as err:
        report.issues.append(Issue("unreadable", str(err)))
        return report
    if contents.tail_bytes:
        report.warnings.append(
            f"{contents.tail_bytes} bytes at byte {contents.tail_offset} are a partial block "
            f"({contents.tail_reason}); the recording was interrupted there"
        )
    if not contents.sections:
        report.issues.append(Issue("no-header", "the file holds no blocks"))
        return report

    first = contents.sections[0]
    try:
        header = SessionHeader.from_block(decode_block(first.block))
    except SessionFormatError as err:
        report.issues.append(Issue("bad-header", str(err), position=0, offset=first.offset))
        return report
    header_cid = cid_for_block(first.block)
    if header_cid != first.cid or contents.roots != [header_cid]:
        report.issues.append(
            Issue("bad-header", "header bytes do not match the CAR root CID", position=0, offset=first.offset)
        )
    report.session, report.device = header.session, header.device.hex()
    report.board, report.sfreq = header.board_name, header.sfreq

    chunks: list[tuple[int, int, CID, dict[str, Any]]] = []  # position, offset, cid, block
    signatures: dict[CID, tuple[int, bytes]] = {}
    last_seq: int | None = None  # seq of the last chunk seen, to place unreadable blocks
    for position, section in enumerate(contents.sections):
        actual = cid_for_block(section.block)
        try:
            block = decode_block(section.block)
        except SessionFormatError:
            block = None
        seq = block.get("seq") if isinstance(block, dict) and isinstance(block.get("seq"), int) else None
        where = (
            ""
            if seq is not None
            else (" (the block after the header)" if last_seq is None else f" (the block after chunk seq {last_seq})")
        )
        if actual != section.cid:
            report.issues.append(
                Issue(
                    "cid-mismatch",
                    f"block bytes do not match their CID (content altered){where}",
                    seq,
                    position,
                    section.offset,
                )
            )
            if block is None or block.get("type") != CHUNK_TYPE:
                continue
        if not isinstance(block, dict):
            report.issues.append(
                Issue("undecodable", f"block is not valid DAG-CBOR{where}", None, position, section.offset)
            )
            continue
        if block.get("type") == CHUNK_TYPE and seq is not None:
            last_seq = seq
        kind = block.get("type")
        if kind == CHUNK_TYPE:
            chunks.append((position, section.offset, section.cid, block))
        elif kind == SIGNATURE_TYPE:
            signed = block.get("signs")
            if isinstance(signed, CID) and isinstance(block.get("signature"), bytes):
                signatures[signed] = (position, block["signature"])
            else:
                report.issues.append(
                    Issue("bad-signature", "malformed signature block", None, position, section.offset)
                )
        elif position:
            report.issues.append(
                Issue("unknown-block", f"unexpected block type {kind!r}", seq, position, section.offset)
            )

    if (
        contents.tail_bytes
        and chunks
        and chunks[-1][2] not in signatures
        and chunks[-1][1] == contents.sections[-1].offset
    ):
        # the crash cut the last chunk's signature: it was never committed
        position, offset, _, block = chunks.pop()
        report.warnings.append(f"chunk seq {block.get('seq')} at byte {offset} has no signature: not counted")
    _check_signature(report, header_cid, header, signatures, None, 0, first.offset)
    _check_chain(report, header, header_cid, chunks, signatures)
    return report


def _check_signature(
    report: SessionReport,
    cid: CID,
    header: SessionHeader,
    signatures: dict[CID, tuple[int, bytes]],
    seq: int | None,
    position: int,
    offset: int,
) -> None:
    found = signatures.get(cid)
    if found is None:
        report.issues.append(Issue("missing-signature", "no device signature for this block", seq, position, offset))
    elif not verify_signature(header.device, found[1], bytes(cid)):
        report.issues.append(
            Issue("bad-signature", "signature does not verify with the session's device key", seq, position, offset)
        )


@dataclass(frozen=True, slots=True)
class TimingStep:
    """How one chunk's start time follows its predecessor's (see :func:`check_timing`)."""

    problem: str | None
    samples_seconds: float  # what this pair adds to the rate estimate (0 if not counted)
    clock_seconds: float


def check_timing(prev_t0_ns: int, prev_n_times: int, t0_ns: int, has_gap: bool, sfreq: float) -> TimingStep:
    """Check that a chunk starts when its predecessor's samples end (device clock).

    A declared gap may start later, never earlier. Pairs across a gap or with a timing
    problem stay out of the rate estimate.
    """
    expected_dt = prev_n_times / sfreq
    dt = (t0_ns - prev_t0_ns) / 1e9
    tolerance = TIMING_TOLERANCE_SECONDS + TIMING_TOLERANCE_FRACTION * expected_dt
    if dt < expected_dt - tolerance or (not has_gap and dt > expected_dt + tolerance):
        problem = f"chunk starts {dt:.3f} s after the previous one, which holds {expected_dt:.3f} s of samples" + (
            "" if dt < expected_dt else " (undeclared gap)"
        )
        return TimingStep(problem, 0.0, 0.0)
    if has_gap:
        return TimingStep(None, 0.0, 0.0)
    return TimingStep(None, expected_dt, dt)


def check_rate(samples_seconds: float, clock_seconds: float, sfreq: float) -> str | None:
    """The whole-session rate check: samples against device-clock time.

    A rate a little off on every chunk stays within the per-chunk tolerance; over the
    whole session it does not (data produced faster than real time is forged).
    """
    if clock_seconds > 0 and samples_seconds >= 2.0:
        ratio = samples_seconds / clock_seconds
        if abs(ratio - 1) > RATE_TOLERANCE + TIMING_TOLERANCE_SECONDS / clock_seconds:
            return (
                f"{samples_seconds:.2f} s of samples at {sfreq:g} Hz arrived over {clock_seconds:.2f} s "
                f"of device clock ({ratio:.2f}× real time)"
            )
    return None


def _check_chain(
    report: SessionReport,
    header: SessionHeader,
    header_cid: CID,
    chunks: list[tuple[int, int, CID, dict[str, Any]]],
    signatures: dict[CID, tuple[int, bytes]],
) -> None:
    expected_prev: CID = header_cid
    expected_seq = 0
    seen: dict[int, int] = {}
    previous: tuple[int, int] | None = None  # (t0_ns, n_times) of the previous chunk
    first_t0: int | None = None
    end_ns = 0
    samples_seconds = 0.0  # over linked, gap-free chunk pairs: seconds of samples ...
    clock_seconds = 0.0  # ... and seconds the device clock advanced
    for position, offset, cid, block in chunks:
        seq = block.get("seq")
        if not isinstance(seq, int):
            report.issues.append(Issue("bad-chunk", "chunk has no integer seq", None, position, offset))
            continue

        def issue(code: str, message: str, seq: int = seq, position: int = position, offset: int = offset) -> None:
            report.issues.append(Issue(code, message, seq, position, offset))

        _check_signature(report, cid, header, signatures, seq, position, offset)
        if block.get("session") != header.session:
            issue("wrong-session", f"chunk belongs to session {block.get('session')!r}")
        linked = seq == expected_seq and block.get("prev") == expected_prev
        if seq in seen:
            issue("duplicate-seq", f"seq {seq} already appeared at block #{seen[seq]}")
        elif seq > expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            issue("missing-chunk", f"chunk(s) {missing} missing before this one")
        elif seq < expected_seq:
            issue("out-of-order", f"seq {seq} appears after seq {expected_seq - 1}")
        if block.get("prev") != expected_prev:
            issue("broken-chain", "prev does not link to the block before it")
        seen.setdefault(seq, position)
        expected_prev, expected_seq = cid, max(expected_seq, seq + 1)
        try:
            samples = chunk_samples(block)
            if samples.shape[0] != len(header.channels):
                raise SessionFormatError(f"{samples.shape[0]} channels, header declares {len(header.channels)}")
            if float(block.get("sfreq", -1)) != header.sfreq:
                raise SessionFormatError(f"sfreq {block.get('sfreq')} differs from header {header.sfreq}")
        except SessionFormatError as err:
            issue("bad-samples", str(err))
            continue
        n_times = samples.shape[1]
        t0 = int(block.get("t0_ns", 0))
        gap = block.get("gap")
        if gap is not None:
            try:
                missing_s = gap_seconds(gap)
                report.gaps.append({"seq": seq, "missing_seconds": missing_s, "reason": str(gap["reason"])})
                if int(gap["resume_ns"]) != t0 or missing_s <= 0:
                    issue("bad-gap", "gap record does not end at this chunk's first sample")
            except (KeyError, TypeError, ValueError):
                issue("bad-gap", "malformed gap record")
        if previous is not None and linked:
            step = check_timing(previous[0], previous[1], t0, gap is not None, header.sfreq)
            if step.problem:
                issue("timing", step.problem)
            samples_seconds += step.samples_seconds
            clock_seconds += step.clock_seconds
        previous = (t0, n_times)
        first_t0 = t0 if first_t0 is None else first_t0
        end_ns = t0 + round(n_times / header.sfreq * 1e9)
        report.chunks += 1
        report.samples += n_times
        report.markers += len(block.get("markers") or [])
        report.first_cid = report.first_cid or str(cid)
        report.last_cid = str(cid)

    rate = check_rate(samples_seconds, clock_seconds, header.sfreq)
    if rate:
        report.issues.append(Issue("rate", rate))
    if first_t0 is not None:
        report.duration_seconds = (end_ns - first_t0) / 1e9
