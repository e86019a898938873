"""The platform's database: SQLAlchemy 2 models and session helpers.

SQLite by default, PostgreSQL for scale; the schema is created and upgraded by Alembic
(``mindprint/labeling/migrations``), never by ``create_all`` in production code.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

__all__ = ["Account", "Assignment", "Base", "LoginNonce", "Project", "TaskItem", "make_engine", "migrate", "utcnow"]

ROLES = ("contributor", "requester", "operator")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes (stored in UTC); PostgreSQL aware ones."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}  # noqa: RUF012 - SQLAlchemy reads this class attribute


class Account(Base):
    __tablename__ = "accounts"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="contributor")
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # research consent: the signed statement (EIP-191) that lets accepted samples be exported
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    consent_signature: Mapped[str | None] = mapped_column(String(132), nullable=True)


class LoginNonce(Base):
    __tablename__ = "login_nonces"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), index=True)
    expires: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)  # the exact EIP-4361 text issued


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(ForeignKey("accounts.address"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    label_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    redundancy: Mapped[int] = mapped_column(Integer, default=3)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reward_pool: Mapped[str] = mapped_column(String(80), default="0")  # wei, as text: the requester's budget
    # challenge–response liveness: cues per lease (0 = off; see verification.challenge)
    challenge_cues: Mapped[int] = mapped_column(Integer, default=0)


class TaskItem(Base):
    __tablename__ = "task_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    gold: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("task_id", "contributor"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task_items.id"), index=True)
    contributor: Mapped[str] = mapped_column(ForeignKey("accounts.address"), index=True)
    lease_expires: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="leased")  # leased | submitted | expired
    # the lease's challenge {nonce, offsets_ms}, drawn when it was leased (None: no challenge)
    challenge: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and foreign keys."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # readable by its owner only (SQLite gives -wal/-shm the same mode)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    # a pool large enough for the API's worker threads plus the job workers; SQLite
    # writers queue for up to 30 s instead of failing after sqlite3's default 5 s
    connect_args: dict[str, Any] = {"timeout": 30} if url.startswith("sqlite") else {}
    if url.startswith("postgresql+psycopg"):
        # every statement prepared on its first run and planned once per connection: the
        # queries are a fixed set of key and index lookups, and planning them anew (psycopg
        # prepares from the 5th run per connection, PostgreSQL plans a prepared statement 5
        # more times) cost more PostgreSQL CPU per submission than running them
        connect_args = {"prepare_threshold": 0, "options": "-c plan_cache_mode=force_generic_plan"}
    engine = create_engine(url, future=True, pool_size=20, max_overflow=40, pool_timeout=60, connect_args=connect_args)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def sessions(engine: Engine) -> sessionmaker[Any]:
    """The engine's session factory, made once: each ``sessionmaker`` is a new ``Session``
    subclass whose event dispatch SQLAlchemy builds on first use — made per request, that
    was 16 % of an API process's CPU under load."""
    maker: sessionmaker[Any] | None = engine.__dict__.get("_mindprint_sessions")
    if maker is None:
        maker = sessionmaker(engine, expire_on_commit=False)
        engine._mindprint_sessions = maker  # type: ignore[attr-defined]
    return maker


class Device(Base):
    """A device key bound to a contributor by their EIP-712 signature (mirrors DeviceRegistry)."""

    __tablename__ = "devices"
    device: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex public key
    contributor: Mapped[str] = mapped_column(ForeignKey("accounts.address"), index=True)
    signature: Mapped[str] = mapped_column(String(132))
    deadline: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # the device's challenge–response, once decided: "passed" | "failed" (None: never decided)
    challenge: Mapped[str | None] = mapped_column(String(8), nullable=True)


class Submission(Base):
    """One submitted sample and its verdict (accepted or rejected, with reasons)."""

    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_history", "contributor", "status", "created"),
        Index("ix_submissions_created", "created"),
    )
    cid: Mapped[str] = mapped_column(String(120), primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task_items.id"), index=True)
    contributor: Mapped[str] = mapped_column(ForeignKey("accounts.address"), index=True)
    device: Mapped[str] = mapped_column(String(64))
    label: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # accepted | rejected
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    reasons: Mapped[dict[str, Any]] = mapped_column(JSON)
    engagement: Mapped[float | None] = mapped_column(nullable=True)
    gold_correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    sealed_manifest: Mapped[str | None] = mapped_column(String(120), nullable=True)
    # the signed bundle itself, kept so that exports carry checkable provenance
    session: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    sample_block: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    device_signature: Mapped[str | None] = mapped_column(String(130), nullable=True)
    wallet_signature: Mapped[str | None] = mapped_column(String(132), nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # accepted while its device's challenge was pending: "held" from rewards until the device's
    # challenge is decided, then "released" (paid) or "forfeited"
    reward_hold: Mapped[str | None] = mapped_column(String(12), nullable=True, index=True)


class IdempotentRequest(Base):
    __tablename__ = "idempotent_requests"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # contributor + Idempotency-Key
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    body_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # sha256 of the request body


class IngestSession(Base):
    """A session streamed by a companion: its signed header and the state of its chunk chain.

    ``next_seq``/``last_cid``/``last_t0_ns``/``last_n_times`` are what the next chunk must
    link to; ``samples_seconds``/``clock_seconds`` accumulate the rate check.
    """

    __tablename__ = "ingest_sessions"
    session: Mapped[str] = mapped_column(String(64), primary_key=True)
    contributor: Mapped[str] = mapped_column(ForeignKey("accounts.address"), index=True)
    device: Mapped[str] = mapped_column(String(64))
    header_cid: Mapped[str] = mapped_column(String(120))
    header_block: Mapped[bytes] = mapped_column(LargeBinary)
    header_sealed: Mapped[bytes] = mapped_column(LargeBinary)  # binary CID of the header's envelope
    header_signature: Mapped[bytes] = mapped_column(LargeBinary)  # device Ed25519 signature
    next_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_cid: Mapped[str] = mapped_column(String(120))
    last_t0_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_n_times: Mapped[int] = mapped_column(Integer, default=0)
    samples_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    clock_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IngestChunk(Base):
    """One verified chunk: its plaintext CID, the device's envelope (stored once) and signature.

    CIDs are kept binary (36 bytes): a row costs ~5 % of the chunk it describes.
    """

    __tablename__ = "ingest_chunks"
    __table_args__ = (UniqueConstraint("session", "cid", name="uq_ingest_chunks_session_cid"),)
    session: Mapped[str] = mapped_column(ForeignKey("ingest_sessions.session"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    cid: Mapped[bytes] = mapped_column(LargeBinary)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    t0_ns: Mapped[int] = mapped_column(BigInteger)
    n_times: Mapped[int] = mapped_column(Integer)


class Job(Base):
    """Work for the pinning and anchoring workers (at-least-once, idempotent handlers)."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # pin | anchor
    ref: Mapped[str] = mapped_column(String(120))
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # queued | running | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    not_before: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # retry backoff
    __table_args__ = (UniqueConstraint("kind", "ref"),)


class ApiKey(Base):
    """A service credential: only its SHA-256 is stored; the key is shown once."""

    __tablename__ = "api_keys"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(ForeignKey("accounts.address"))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RewardEpoch(Base):
    __tablename__ = "reward_epochs"
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    root: Mapped[str] = mapped_column(String(66))
    total: Mapped[str] = mapped_column(String(80))  # wei, as text (exceeds 64 bits)
    claims: Mapped[dict[str, Any]] = mapped_column(JSON)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class FederatedRound(Base):
    """One round of federated training under secure aggregation (``mindprint.platform.federated``).

    ``members`` holds the client sets the protocol fixes step by step: ``u1`` advertised
    keys, ``u2`` sent shares, ``u3`` sent masked updates, ``u4`` answered the unmasking.
    """

    __tablename__ = "fl_rounds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phase: Mapped[str] = mapped_column(String(16), index=True)  # keys | shares | masked | unmask | done | failed
    model_cid: Mapped[str] = mapped_column(String(120))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    min_clients: Mapped[int] = mapped_column(Integer)
    max_clients: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(Integer)
    phase_seconds: Mapped[float] = mapped_column(Float)
    phase_deadline: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    members: Mapped[dict[str, Any]] = mapped_column(JSON)
    result_cid: Mapped[str | None] = mapped_column(String(120), nullable=True)
    record_cid: Mapped[str | None] = mapped_column(String(120), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class FederatedMessage(Base):
    """A client's message of one step of a round (the server relays shares it cannot read)."""

    __tablename__ = "fl_messages"
    round: Mapped[int] = mapped_column(ForeignKey("fl_rounds.id"), primary_key=True)
    step: Mapped[str] = mapped_column(String(16), primary_key=True)
    sender: Mapped[str] = mapped_column(String(42), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(42), primary_key=True)  # "" when addressed to the server
    body: Mapped[bytes] = mapped_column(LargeBinary)


class LabelOverride(Base):
    """A reviewer's label for a task item, in place of the computed consensus."""

    __tablename__ = "label_overrides"
    task_id: Mapped[int] = mapped_column(ForeignKey("task_items.id"), primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    reviewer: Mapped[str] = mapped_column(ForeignKey("accounts.address"))
    note: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExportJob(Base):
    """A BIDS export started from the requester console; the zip lands in the platform directory."""

    __tablename__ = "export_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    requester: Mapped[str] = mapped_column(String(42))
    format: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued | running | done | failed
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    runner: Mapped[str | None] = mapped_column(String(80), nullable=True)  # host:pid running it
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class FingerprintRow(Base):
    """An accepted sample's fingerprints, one row per sample in commit order (the replay
    index, with :class:`ReplayKey`). ``codes`` are the fingerprint vectors as int8
    (``vector × 200``), ``positions`` their grid positions as int16 (negative in the
    second before the epoch) — about 44 KB for 4 s of 8 channels with that second; read
    only for the few candidates a query's keys name."""

    __tablename__ = "fingerprints"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sample: Mapped[str] = mapped_column(String(120), index=True)
    codes: Mapped[bytes] = mapped_column(LargeBinary)
    positions: Mapped[bytes] = mapped_column(LargeBinary)


class ReplayKey(Base):
    """The replay index's lookup table: the SimHash keys of an accepted sample's fingerprints
    (``uniqueness.hash_keys``), one row per distinct key. A query looks its keys up through
    the primary key's B-tree — cost in log(rows), shared by every process, nothing to load."""

    __tablename__ = "replay_keys"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012  # SQLAlchemy reads it from the class
    key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    fingerprint: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class ReplayGuard(Base):
    """One row whose update serialises the last step of a replay check across processes:
    rows added by other replicas since a query are checked, then this sample's are added,
    in one transaction (the row lock makes fingerprint ids follow commit order)."""

    __tablename__ = "replay_guard"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    accepted: Mapped[int] = mapped_column(BigInteger, default=0)


class CueTrial(Base):
    """One cue's trial of a device's sample (float32, band-passed, baseline-corrected): the
    challenge score reads a device's last ``K`` rows of one shape through the index."""

    __tablename__ = "cue_trials"
    __table_args__ = (Index("ix_cue_trials_device_shape", "device", "n_channels", "n_times", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device: Mapped[str] = mapped_column(String(64))
    sample: Mapped[str] = mapped_column(String(120), index=True)
    n_channels: Mapped[int] = mapped_column(Integer)
    n_times: Mapped[int] = mapped_column(Integer)
    sfreq: Mapped[float] = mapped_column(Float)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
