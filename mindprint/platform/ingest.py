"""Streamed sessions: the companion opens a session and sends each chunk once, encrypted.

Per chunk, on arrival and only then: the envelope opens with the session's data key (HPKE-
wrapped by the device for the platform), the plaintext hashes to the CID the device
signed, the device's signature verifies, the chunk links to its predecessor (``prev``,
``seq``), its layout matches the header, its start time follows its predecessor's
samples and the session's rate stays real time (device clock). The device's envelope is
stored as it came (one raw block, no re-encryption); the session row keeps what the next
chunk must link to. Uploads are idempotent per seq: a chunk already held is acknowledged,
another chunk at a held seq is a conflict, and ``GET`` tells the companion where to resume.

A sample cites consecutive chunks: :func:`load_cited` loads exactly those rows and
envelopes, so checking a sample costs the same at minute 1 and minute 60.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from multiformats import CID
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mindprint.core.errors import Conflict, CryptoError, InvalidRequest, NotFound, SessionFormatError, TooLarge
from mindprint.core.ipld import cid_for_block, cid_from_bytes, cid_text, decode_block, decode_known_block
from mindprint.device.keys import verify_signature
from mindprint.device.session import (
    CHUNK_TYPE,
    SessionHeader,
    SessionReport,
    check_rate,
    check_timing,
    chunk_samples,
)
from mindprint.labeling.store import Device, IngestChunk, IngestSession, utcnow
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.crypto import WrappedKey, open_payload, seal_payload_deterministic, unwrap_key
from mindprint.ledger.sealing import envelope_aad, sealed_manifest
from mindprint.platform.service import Platform

logger = logging.getLogger(__name__)

#: an envelope of one chunk (0.5–1 s of up to 64 channels at 1 kHz is ≤ 256 KiB)
MAX_CHUNK_BYTES = 512 * 2**10
MAX_HEADER_BYTES = 16 * 2**10
MAX_LEAD_CHUNKS = 64  # chunks read for a stored sample's lead (1 s of 0.05 s chunks is 20)

__all__ = [
    "CitedEpoch",
    "excerpt_manifest",
    "get_session",
    "load_cited",
    "open_session",
    "preceding_chunks",
    "put_chunk",
    "session_manifest",
    "session_state",
]


def _cid(text: str, what: str) -> CID:
    try:
        return CID.decode(text)
    except Exception as err:  # multiformats raises several types for malformed CIDs
        raise InvalidRequest(f"{what} is not a CID") from err


def _header(block: bytes) -> SessionHeader:
    try:
        return SessionHeader.from_block(decode_block(block))
    except SessionFormatError as err:
        raise InvalidRequest(f"not a session header: {err}") from err


def session_state(row: IngestSession) -> dict[str, Any]:
    """What the companion needs to resume: the seqs held are ``0 … next_seq − 1``."""
    return {"session": row.session, "next_seq": row.next_seq, "last_cid": row.last_cid}


def _own_session(db: Session, contributor: str, session: str) -> IngestSession:
    row = db.get(IngestSession, session)
    if row is None or row.contributor != contributor:
        raise NotFound(f"no session {session}")
    return row


def get_session(db: Session, contributor: str, session: str) -> dict[str, Any]:
    return session_state(_own_session(db, contributor, session))


def open_session(
    db: Session, platform: Platform, contributor: str, header_block: bytes, signature: bytes, wrapped: dict[str, str]
) -> dict[str, Any]:
    """Open (or re-open, idempotently) a streamed session from its signed header."""
    if len(header_block) > MAX_HEADER_BYTES:
        raise TooLarge(f"session header exceeds {MAX_HEADER_BYTES} bytes")
    header = _header(header_block)
    header_cid = cid_for_block(header_block)
    if not verify_signature(header.device, signature, bytes(header_cid)):
        raise InvalidRequest("the device signature on the session header does not verify")
    device = db.get(Device, header.device.hex())
    if device is None or device.contributor != contributor or device.revoked:
        raise InvalidRequest("the session's device is not bound to you (POST /devices first)")
    existing = db.get(IngestSession, header.session)
    if existing is not None:
        if existing.header_cid != cid_text(header_cid) or existing.contributor != contributor:
            raise Conflict(f"session {header.session} is already open with another header")
        return session_state(existing)
    try:
        key = WrappedKey.from_dict(wrapped)
        data_key = unwrap_key(key, platform.platform_key, header.session)
    except CryptoError as err:
        raise InvalidRequest(f"the wrapped data key does not open with the platform's key: {err}") from err
    row = IngestSession(
        session=header.session,
        contributor=contributor,
        device=header.device.hex(),
        header_cid=cid_text(header_cid),
        header_block=header_block,
        header_sealed=bytes(platform.blockstore.put(_seal(data_key, header.session, header_cid, header_block))),
        header_signature=signature,
        next_seq=0,
        last_cid=cid_text(header_cid),
        last_t0_ns=None,
        last_n_times=0,
        samples_seconds=0.0,
        clock_seconds=0.0,
        bytes_received=len(header_block),
        created=utcnow(),
    )
    platform.keys.add(header.session, key)  # the device's HPKE-wrapped key, kept as it came
    db.add(row)
    try:
        db.commit()
    except IntegrityError:  # a concurrent open of the same session won
        db.rollback()
        return open_session(db, platform, contributor, header_block, signature, wrapped)
    platform.remember_session(header.session, data_key, header)
    return session_state(row)


def _seal(data_key: bytes, session: str, cid: CID, block: bytes) -> bytes:
    # deterministic: re-opening the same session stores the same envelope
    return seal_payload_deterministic(data_key, block, envelope_aad(session, cid))


def _session_context(platform: Platform, row: IngestSession) -> tuple[bytes, SessionHeader]:
    cached = platform.session_context(row.session)
    if cached is not None:
        return cached
    data_key = platform.keys.data_key(row.session, platform.platform_key)
    header = SessionHeader.from_block(decode_known_block(row.header_block))  # decoded strictly when opened
    platform.remember_session(row.session, data_key, header)
    return data_key, header


def _check_chunk(row: IngestSession, header: SessionHeader, seq: int, value: Any) -> tuple[int, int, float, float]:
    """The chain, layout and timing checks; returns (t0_ns, n_times, samples_s, clock_s) to add."""
    if not isinstance(value, dict) or value.get("type") != CHUNK_TYPE:
        raise InvalidRequest("not a mindprint chunk block")
    if value.get("session") != row.session or value.get("seq") != seq:
        raise InvalidRequest(f"chunk names session {value.get('session')!r:.60} seq {value.get('seq')!r:.20}")
    if value.get("prev") != CID.decode(row.last_cid):
        raise InvalidRequest(f"broken chain: chunk {seq} does not link to the chunk before it")
    try:
        samples = chunk_samples(value)
        sfreq, t0 = float(value["sfreq"]), int(value["t0_ns"])
    except (SessionFormatError, KeyError, TypeError, ValueError) as err:
        raise InvalidRequest(f"chunk {seq}: {err}") from err
    if samples.shape[0] != len(header.channels) or sfreq != header.sfreq or samples.shape[1] == 0:
        raise InvalidRequest(f"chunk {seq} holds {samples.shape} samples at {sfreq:g} Hz; the header disagrees")
    if not np.isfinite(samples).all():
        raise InvalidRequest(f"chunk {seq} holds NaN or infinite samples")
    gap = value.get("gap")
    if gap is not None:
        try:
            if int(gap["resume_ns"]) != t0 or int(gap["resume_ns"]) <= int(gap["last_ns"]):
                raise ValueError("gap does not end at the chunk's first sample")
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidRequest(f"chunk {seq}: malformed gap record ({err})") from err
    added_samples = added_clock = 0.0
    if row.last_t0_ns is not None:
        step = check_timing(row.last_t0_ns, row.last_n_times, t0, gap is not None, header.sfreq)
        if step.problem:
            raise InvalidRequest(f"chunk {seq}: [timing] {step.problem}")
        added_samples, added_clock = step.samples_seconds, step.clock_seconds
        rate = check_rate(row.samples_seconds + added_samples, row.clock_seconds + added_clock, header.sfreq)
        if rate:
            raise InvalidRequest(f"chunk {seq}: [rate] {rate}")
    return t0, int(samples.shape[1]), added_samples, added_clock


def put_chunk(
    db: Session,
    platform: Platform,
    contributor: str,
    session: str,
    seq: int,
    cid: str,
    signature: bytes,
    envelope: bytes,
) -> dict[str, Any]:
    """Verify one chunk and store its envelope once; idempotent per (session, seq)."""
    row = _own_session(db, contributor, session)
    chunk_cid = _cid(cid, "cid")
    if seq < row.next_seq:
        held = db.get(IngestChunk, (session, seq))
        if held is not None and held.cid == bytes(chunk_cid):
            return {**session_state(row), "stored": False}
        raise Conflict(f"seq {seq} is already held with another chunk")
    if seq > row.next_seq:
        raise Conflict(f"chunks must arrive in order: the platform holds up to seq {row.next_seq - 1}")
    if len(envelope) > MAX_CHUNK_BYTES:
        raise TooLarge(f"chunk envelope exceeds {MAX_CHUNK_BYTES} bytes")
    data_key, header = _session_context(platform, row)
    try:
        block = open_payload(data_key, envelope, envelope_aad(session, chunk_cid))
    except CryptoError as err:
        raise InvalidRequest(f"chunk {seq}: the envelope does not open with the session key ({err})") from err
    if cid_for_block(block) != chunk_cid:
        raise InvalidRequest(f"chunk {seq}: [cid-mismatch] the plaintext does not hash to {cid}")
    if not verify_signature(header.device, signature, bytes(chunk_cid)):
        raise InvalidRequest(f"chunk {seq}: [bad-signature] the device signature does not verify")
    try:
        value = decode_block(block)
    except SessionFormatError as err:
        raise InvalidRequest(f"chunk {seq} is not DAG-CBOR: {err}") from err
    t0, n_times, added_samples, added_clock = _check_chunk(row, header, seq, value)
    sealed = platform.blockstore.put(envelope)  # the device's ciphertext, as it came
    db.add(
        IngestChunk(
            session=session,
            seq=seq,
            cid=bytes(chunk_cid),
            sealed=bytes(sealed),
            signature=signature,
            t0_ns=t0,
            n_times=n_times,
        )
    )
    moved = db.execute(
        update(IngestSession)
        .where(IngestSession.session == session, IngestSession.next_seq == seq)
        .values(
            next_seq=seq + 1,
            last_cid=cid_text(chunk_cid),
            last_t0_ns=t0,
            last_n_times=n_times,
            samples_seconds=IngestSession.samples_seconds + added_samples,
            clock_seconds=IngestSession.clock_seconds + added_clock,
            bytes_received=IngestSession.bytes_received + len(envelope),
        )
    )
    try:
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise IntegrityError("concurrent upload", None, ValueError())
        db.commit()
        platform.remember_chunk(bytes(chunk_cid), dict(value))
    except IntegrityError:
        db.rollback()  # the same seq arrived twice at once: answer as the loser would on retry
        return put_chunk(db, platform, contributor, session, seq, cid, signature, envelope)
    return {"session": session, "next_seq": seq + 1, "last_cid": cid_text(chunk_cid), "stored": True}


@dataclass(frozen=True, slots=True)
class CitedEpoch:
    """The chunks a sample cites, decrypted and checked against their CIDs."""

    header: SessionHeader
    rows: list[IngestChunk]
    blocks: list[dict[str, Any]]
    session: IngestSession

    def report(self) -> SessionReport:
        """A session report for the cited chunks (each verified when it arrived)."""
        return SessionReport(
            path=f"ingest:{self.session.session}",
            session=self.session.session,
            device=self.session.device,
            board=self.header.board_name,
            sfreq=self.header.sfreq,
            chunks=len(self.rows),
            samples=sum(r.n_times for r in self.rows),
            first_cid=cid_text(cid_from_bytes(self.rows[0].cid)),
            last_cid=cid_text(cid_from_bytes(self.rows[-1].cid)),
        )


def load_cited(
    db: Session,
    platform: Platform,
    contributor: str,
    session: str,
    chunks: Sequence[CID],
    *,
    streamed: IngestSession | Literal[False] | None = False,
) -> CitedEpoch:
    """Load exactly the cited chunks: held by this session, consecutive, in order.

    ``streamed``: the session's row (or None: no such session) when the caller already read it.
    """
    row = db.get(IngestSession, session) if streamed is False else streamed
    if row is None or row.contributor != contributor:
        raise InvalidRequest(f"the sample's session {session} was not streamed to this platform by you")
    wanted = [bytes(c) for c in chunks]
    found = {
        r.cid: r
        for r in db.scalars(select(IngestChunk).where(IngestChunk.session == session, IngestChunk.cid.in_(wanted)))
    }
    missing = [c for c, raw in zip(chunks, wanted, strict=True) if raw not in found]
    if missing:
        raise Conflict(f"the sample cites {len(missing)} chunk(s) the platform does not hold yet: {missing[0]}")
    rows = [found[raw] for raw in wanted]
    if any(b.seq != a.seq + 1 for a, b in itertools.pairwise(rows)):
        raise InvalidRequest("the sample's chunks are not consecutive chunks of its session")
    data_key, header = _session_context(platform, row)
    blocks = [_open_chunk(platform, data_key, chunk) for chunk in rows]
    return CitedEpoch(header, rows, blocks, row)


def _open_chunk(platform: Platform, data_key: bytes, chunk: IngestChunk) -> dict[str, Any]:
    """A stored chunk, decrypted and checked against its CID (or as this process verified it on upload)."""
    known = platform.verified_chunk(chunk.cid)
    if known is not None:
        return dict(known)
    cid = cid_from_bytes(chunk.cid)
    envelope = platform.blockstore.get(cid_from_bytes(chunk.sealed))
    block = open_payload(data_key, envelope, envelope_aad(chunk.session, cid))
    if cid_for_block(block) != cid:
        raise InvalidRequest(f"stored chunk {chunk.seq} does not match its CID")
    return dict(decode_known_block(block))  # its bytes hash to a chunk decoded strictly on upload


def preceding_chunks(db: Session, platform: Platform, cited: CitedEpoch, n_times: int) -> list[dict[str, Any]]:
    """The session's chunks just before the cited ones, oldest first, decoded: enough to hold
    ``n_times`` samples where the session has them, and only EEG contiguous with the cited
    chunks (none if the first cited chunk follows a declared gap; none before a chunk that
    does). A bounded read — at most ``n_times`` samples' worth of chunks, one statement."""
    first = cited.rows[0]
    if n_times <= 0 or first.seq == 0 or cited.blocks[0].get("gap") is not None:
        return []
    per_chunk = max(1, min(r.n_times for r in cited.rows))
    rows = db.scalars(
        select(IngestChunk)
        .where(
            IngestChunk.session == first.session,
            IngestChunk.seq < first.seq,
            IngestChunk.seq >= first.seq - min(-(-n_times // per_chunk) + 1, MAX_LEAD_CHUNKS),
        )
        .order_by(IngestChunk.seq.desc())
    ).all()
    data_key, _ = _session_context(platform, cited.session)
    blocks: list[dict[str, Any]] = []
    expected, held = first.seq - 1, 0
    for row in rows:
        if row.seq != expected or held >= n_times:
            break
        block = _open_chunk(platform, data_key, row)
        blocks.append(block)
        held, expected = held + row.n_times, expected - 1
        if block.get("gap") is not None:
            break  # data is missing before this chunk: nothing earlier is contiguous
    return blocks[::-1]


def epoch_lead(db: Session, platform: Platform, cited: CitedEpoch, start: int, n_times: int) -> np.ndarray:
    """The EEG (eeg channels × at most ``n_times``) the session streamed just before sample
    ``start`` of the cited chunks: what the cited chunks hold ahead of it, then the chunks
    before them (:func:`preceding_chunks`, a bounded read made only if those are not enough)."""
    rows = cited.header.eeg_rows
    ahead, held_samples = [], 0  # only the cited chunks up to ``start`` (usually the first alone)
    for block in cited.blocks:
        if held_samples >= start:
            break
        ahead.append(chunk_samples(block)[rows])
        held_samples += ahead[-1].shape[1]
    cited_eeg = np.concatenate(ahead, axis=1) if ahead else np.empty((len(rows), 0))
    held = cited_eeg[:, max(0, start - n_times) : start]
    if held.shape[1] < n_times:
        blocks = preceding_chunks(db, platform, cited, n_times - held.shape[1])
        if blocks:
            before = np.concatenate([chunk_samples(block) for block in blocks], axis=1)[rows]
            held = np.concatenate([before, held], axis=1)[:, -n_times:]
    return held.astype(np.float64)


def _manifest(store: Blockstore, row: IngestSession, chunks: Sequence[IngestChunk]) -> CID:
    """A sealed-session manifest: the header and the chunks' envelopes as the device sent them,
    each with the device's signature inline."""
    header_cid = CID.decode(row.header_cid)
    entries: list[dict[str, object]] = [
        {"block": bytes(header_cid), "sealed": cid_from_bytes(row.header_sealed), "signature": row.header_signature}
    ]
    entries += [
        {"block": chunk.cid, "sealed": cid_from_bytes(chunk.sealed), "signature": chunk.signature} for chunk in chunks
    ]
    return sealed_manifest(store, row.session, [header_cid], entries)


def excerpt_manifest(platform: Platform, cited: CitedEpoch) -> CID:
    """A sealed-session manifest of the header and the cited chunks (what a sample pins)."""
    return _manifest(platform.blockstore, cited.session, cited.rows)


def session_manifest(db: Session, store: Blockstore, session: str) -> CID | None:
    """A sealed-session manifest of the whole streamed session so far (for exports), or None."""
    row = db.get(IngestSession, session)
    if row is None:
        return None
    chunks = db.scalars(select(IngestChunk).where(IngestChunk.session == session).order_by(IngestChunk.seq)).all()
    return _manifest(store, row, chunks)
