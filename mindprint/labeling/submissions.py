"""Submissions: verify a sample on arrival, score it, accept it in one transaction.

Everything a submission goes through, cheapest first (each failure is a clear reason):

1. decoding: the sample block (≤ 64 KiB) against its CID, every field's type and range
   (:class:`~mindprint.protocol.formats.SampleValue`), the signatures' encodings;
2. duplicate sample, the task, the contributor's lease on it, the label against the
   project's label schema;
3. the chunks the sample cites: held by the platform for this session (each verified when
   it was streamed, :mod:`mindprint.platform.ingest`), consecutive; only those are
   decrypted — the cost does not depend on how long the session is;
4. the device and wallet signatures, the epoch cut from the chunks, the signal pipeline
   re-run and compared with the edge's features
   (:func:`~mindprint.labeling.samples.check_cited`); the device binding;
5. scores: authenticity, liveness, uniqueness (the replay query and, if accepted, the
   insert are one atomic step), attention and — when the lease carried a challenge — the
   evoked response to its cues over the device's last K cue trials
   (:mod:`mindprint.platform.challenges`); the verdict;
6. **one transaction**: the submission row, the lease, the ``pin`` and ``anchor`` jobs and
   the idempotency record commit together. An accepted sample's pinned manifest links the
   header and the cited chunks' envelopes as the device sent them (nothing re-encrypted).

Domain errors (:class:`~mindprint.core.errors.RequestError` subclasses) carry no HTTP
status; the API maps them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from typing import Any

import numpy as np
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from numpy.typing import NDArray
from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mindprint.core.errors import (
    Conflict,
    CryptoError,
    InvalidRequest,
    NotAuthenticated,
    NotFound,
    SessionFormatError,
    SignalError,
    TooLarge,
)
from mindprint.core.ipld import cid_for_block, cid_text
from mindprint.device.session import Issue, SessionReport
from mindprint.labeling.samples import SampleCheck, check_cited, decode_signed
from mindprint.labeling.store import (
    Assignment,
    Device,
    IdempotentRequest,
    IngestSession,
    Job,
    Project,
    Submission,
    TaskItem,
    aware,
    utcnow,
)
from mindprint.labeling.verification.liveness import reusable_band
from mindprint.labeling.verification.scores import (
    Score,
    attention_score,
    authenticity_score,
    decide,
    uniqueness_score,
)
from mindprint.labeling.verification.uniqueness import LEAD_SECONDS, QuerySet, query_set, stored_fingerprints
from mindprint.platform.challenges import check_challenge, store_trials
from mindprint.platform.ingest import CitedEpoch, epoch_lead, excerpt_manifest, load_cited
from mindprint.platform.replay import add, check_fresh, guard, lookup
from mindprint.platform.service import Platform
from mindprint.platform.tasks import check_label
from mindprint.protocol.formats import SampleError, SignedSample, device_typed_data

logger = logging.getLogger(__name__)

MAX_SAMPLE_BYTES = 64 * 2**10

__all__ = ["MAX_SAMPLE_BYTES", "Platform", "bind_device", "body_digest", "check_label", "device_typed_data", "submit"]


def bind_device(
    db: Session, platform: Platform, contributor: str, device_hex: str, deadline: int, signature: str
) -> Device:
    try:
        device = bytes.fromhex(device_hex.removeprefix("0x"))
    except ValueError as err:
        raise InvalidRequest("device must be a hex Ed25519 public key") from err
    if len(device) != 32:
        raise InvalidRequest("device must be 32 bytes")
    if deadline < utcnow().timestamp():
        raise NotAuthenticated("binding signature expired")
    typed = device_typed_data(device, contributor, deadline, platform.chain_id, platform.registry_address)
    try:
        signer = Account.recover_message(encode_typed_data(full_message=typed), signature=signature)
    except Exception as err:  # eth-account raises several types
        raise NotAuthenticated("binding signature does not verify") from err
    if signer != to_checksum_address(contributor):
        raise NotAuthenticated("binding must be signed by the contributor's wallet")
    existing = db.get(Device, device.hex())
    if existing is not None and (existing.contributor != signer or existing.revoked):
        raise Conflict("device is bound to another contributor or was revoked")
    record = existing or Device(device=device.hex(), contributor=signer, signature=signature, revoked=False)
    record.signature, record.deadline = signature, deadline
    db.add(record)
    db.commit()
    return record


def decode_base64(value: str, what: str, limit: int) -> bytes:
    if len(value) > limit * 4 // 3 + 8:
        raise TooLarge(f"{what} exceeds {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise InvalidRequest(f"{what} is not base64") from err


def decode_hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError as err:
        raise InvalidRequest(f"{what} is not hex") from err


def body_digest(bundle: dict[str, Any]) -> str:
    """What an ``Idempotency-Key`` is bound to: the SHA-256 of the submitted fields."""
    text = "\n".join(f"{k}={bundle[k]}" for k in sorted(bundle))
    return hashlib.sha256(text.encode()).hexdigest()


def _previous(db: Session, key: str | None, digest: str) -> dict[str, Any] | None:
    if key is None:
        return None
    previous = db.get(IdempotentRequest, key)
    if previous is None:
        return None
    if previous.body_hash is not None and previous.body_hash != digest:
        raise InvalidRequest("this Idempotency-Key was used with another request body")
    return dict(previous.response)


def _newest_rows(db: Session) -> None:
    """Let the next statement see rows other processes committed since this transaction read.

    SQLite keeps a read transaction's snapshot until it ends (and refuses to turn a stale one
    into a write): commit. PostgreSQL at read committed takes a new snapshot for every
    statement, so there a commit would only cost ~180 µs of client CPU and a pool round trip.
    """
    if db.get_bind().dialect.name == "sqlite":
        db.commit()


def _stored(
    db: Session, platform: Platform, cited: CitedEpoch, start: int, check: SampleCheck, queries: QuerySet, hop: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The fingerprints an accepted sample (from sample ``start`` of the cited chunks) stores:
    over its epoch and up to LEAD_SECONDS of the EEG its session streamed just before it
    (``ingest.epoch_lead``), so that a replay straddling it and what came before is caught."""
    try:
        lead = epoch_lead(db, platform, cited, start, int(round(LEAD_SECONDS * check.sfreq)))
    except (CryptoError, SessionFormatError, InvalidRequest, ValueError, KeyError) as err:
        # the sample is accepted all the same; only its lead is not stored
        logger.warning("sample's lead not read (%s): stored from its epoch only", err)
        return queries.stored(hop)
    # checked here, not left to ``stored_fingerprints`` (which refuses non-finite data): a
    # lead that cannot be fingerprinted costs the sample its lead, never its acceptance
    if not lead.shape[1] or not np.all(np.isfinite(lead)):
        return queries.stored(hop)
    return stored_fingerprints(check.epoch, check.sfreq, lead, hop)


def submit(
    db: Session,
    platform: Platform,
    contributor: str,
    bundle: dict[str, str],
    *,
    idempotency_key: str | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Verify, score and store one submission; returns the public verdict.

    ``timings``, if given, receives the seconds each step took, wall and CPU (the API sends
    them as a ``Server-Timing`` header, which the ingest and API benchmarks read).
    """
    clock = _Clock(timings)
    key = f"{contributor}:{idempotency_key}" if idempotency_key else None
    digest = body_digest(bundle)
    answered = _previous(db, key, digest)
    if answered is not None:
        return answered
    # 1. decoding
    block = decode_base64(bundle["sample"], "sample", MAX_SAMPLE_BYTES)
    signed = SignedSample(
        block,
        cid_for_block(block),
        decode_hex(bundle["device_signature"], "device_signature"),
        decode_hex(bundle["wallet_signature"], "wallet_signature"),
    )
    try:
        value, sample = decode_signed(signed)
    except SampleError as err:
        raise InvalidRequest(f"sample does not check out: {err}") from err
    cid = cid_text(signed.cid)
    # 2. cheap checks: whether the sample was submitted, its task and project, the lease, the
    # device and the streamed session in one round trip (each statement costs ~0.2 ms of client CPU through the ORM)
    duplicate = select(Submission.cid).where(Submission.cid == cid)  # not the whole row
    found = db.execute(
        select(TaskItem, Project, Assignment, Device, IngestSession, duplicate.scalar_subquery())
        .join(Project, Project.id == TaskItem.project_id)
        .outerjoin(Assignment, and_(Assignment.task_id == TaskItem.id, Assignment.contributor == contributor))
        .outerjoin(Device, Device.device == sample.device.hex())
        .outerjoin(IngestSession, IngestSession.session == sample.session)
        .where(TaskItem.id == sample.task)
    ).first()
    if (found[-1] if found is not None else db.scalar(duplicate)) is not None:
        raise Conflict(f"duplicate submission: sample {cid} was already submitted")
    if found is None:
        raise NotFound(f"no task {sample.task}")
    task, project, lease, device, streamed, _ = found  # a Row unpacks like a tuple
    if lease is None or lease.status != "leased" or aware(lease.lease_expires) < utcnow():
        raise Conflict("you hold no active lease on this task (GET /tasks/next first)")
    issued = lease.challenge  # the challenge this lease was given (None: none)
    # read before the commit below expires the rows (reading after it reloads the task)
    gold_answer = (task.gold or {}).get("answer") if task.gold else None
    check_label(project.label_schema, sample.label)
    bound = device is not None and device.contributor == contributor and not device.revoked
    # the contributor's last 50 accepted samples (two columns, through an index: constant cost)
    history = db.execute(
        select(Submission.engagement, Submission.gold_correct)
        .where(Submission.contributor == contributor, Submission.status == "accepted")
        .order_by(Submission.created.desc())
        .limit(50)
    ).all()
    clock.lap("checks")
    # 3. the cited chunks only (database reads: before the slot, which holds CPU work)
    try:
        cited = load_cited(db, platform, contributor, sample.session, sample.chunks, streamed=streamed)
    except (SampleError, SignalError) as err:
        raise InvalidRequest(f"sample does not check out: {err}") from err
    clock.lap("chunks")
    db.commit()  # end the read transaction: no connection is held while waiting for a slot
    # one verification at a time per process (``verify_concurrency``): 32 threads verifying at
    # once cost 80 ms of CPU per submission, one at a time ~50 ms, for the same throughput
    with platform.verify_slots:
        clock.lap("queue")
        # 4. signatures, the pipeline re-run
        try:
            check = check_cited(
                signed,
                sample,
                cited.header,
                cited.blocks,
                cited.report(),
                contributor=contributor,
                chain_id=platform.chain_id,
                models=platform.models,
                value=value,
            )
            clock.lap("pipeline")
            band = reusable_band(check.filtered, check.design)  # the pipeline's filtered epoch, not filtered twice
            liveness = platform.liveness.assess(check.epoch, check.sfreq, band=band)
            clock.lap("liveness")
            cued = check_challenge(db, platform, issued, sample, check)
            challenge = None if cued is None else Score(cued.score.value, cued.score.reasons)
            clock.lap("challenge")
        except (SampleError, SignalError) as err:
            raise InvalidRequest(f"sample does not check out: {err}") from err
        _newest_rows(db)  # the replay lookup below reads what other processes committed meanwhile
        report = check.report
        if check.problems:
            report = SessionReport(path=report.path, session=report.session, device=report.device)
            report.issues = [Issue("sample", problem) for problem in check.problems]
        authenticity = authenticity_score(report, device_bound=bound)
        engagement = float(check.recomputed.get("engagement") or 0.0)
        gold_correct = None if gold_answer is None else sample.label == gold_answer
        past_gold = [s.gold_correct for s in history if s.gold_correct is not None]
        if gold_correct is not None:
            past_gold.append(gold_correct)
        response_time = (sample.response_ns - sample.stimulus_ns) / 1e9
        attention = attention_score(
            engagement, [s.engagement for s in history if s.engagement], [response_time], sum(past_gold), len(past_gold)
        )
        clock.lap("attention")
        # 5. the replay query's fingerprints and keys (the lookup waits on the database: not
        # in the slot)
        rule = platform.replay_rule
        queries = query_set(check.epoch, check.sfreq, rule.hop)
    # the shared index in the platform database: keys, then the few samples sharing most of
    # them checked exactly
    replay = lookup(db, queries, cid, rule=rule)
    _newest_rows(db)  # the guard below writes
    verdict = decide(authenticity, liveness, uniqueness_score(replay.match), attention, challenge)
    clock.lap("replay")
    if verdict.accepted:
        # what other processes accepted meanwhile, under the cross-process guard held until
        # this transaction commits: two replicas cannot both accept the same EEG
        vectors, positions = _stored(db, platform, cited, sample.start, check, queries, rule.hop)
        clock.lap("stored")  # its lead read and the fingerprints of lead and epoch
        guard(db)
        late, _ = check_fresh(db, replay.seen, queries, cid, rule=rule)
        clock.lap("guard")  # the cross-process lock and what others accepted meanwhile
        if late is not None:
            verdict = decide(authenticity, liveness, uniqueness_score(late), attention, challenge)
        if verdict.accepted:
            add(db, cid, vectors, positions)
    clock.lap("fingerprints")
    status = "accepted" if verdict.accepted else "rejected"
    result = {
        "sample_cid": cid,
        "status": status,
        "scores": verdict.scores,
        "reasons": verdict.reasons,
        "task_id": sample.task,
    }
    # 6. one transaction
    submission = Submission(
        cid=cid,
        task_id=sample.task,
        contributor=contributor,
        device=sample.device.hex(),
        label={"value": sample.label},
        status=status,
        scores=verdict.scores,
        reasons={"reasons": verdict.reasons},
        engagement=engagement,
        gold_correct=gold_correct,
        session=sample.session,
        sample_block=signed.block,
        device_signature=signed.device_signature.hex(),
        wallet_signature="0x" + signed.wallet_signature.hex(),
        sealed_manifest=cid_text(excerpt_manifest(platform, cited)) if verdict.accepted else None,
    )
    db.add(submission)
    if cued is not None and cued.trials is not None and authenticity.value >= 1.0:
        store_trials(db, sample.device, cid, cued.trials, check.sfreq)
        if cued.score.value == 0.5 and verdict.accepted:
            submission.reward_hold = "held"  # paid once the device's challenge passes
        elif cued.score.value != 0.5 and device is not None:  # the bound device (authenticity 1)
            device.challenge = "passed" if cued.score.value >= 1.0 else "failed"
    db.execute(
        update(Assignment)
        .where(Assignment.task_id == sample.task, Assignment.contributor == contributor)
        .values(status="submitted")
    )
    if verdict.accepted:
        db.add_all([Job(kind="pin", ref=cid), Job(kind="anchor", ref=cid)])
    if key is not None:
        db.add(IdempotentRequest(key=key, status_code=201, response=result, body_hash=digest))
    try:
        db.commit()
    except IntegrityError as err:  # the same sample or key committed concurrently
        db.rollback()
        answered = _previous(db, key, digest)
        if answered is not None:
            return answered
        raise Conflict(f"duplicate submission: sample {cid} was already submitted") from err
    clock.lap("commit")
    return result


def warm_up(platform: Platform, sfreq: float = 250.0, n_channels: int = 8) -> None:
    """Run the signal pipeline, liveness and the replay query once on 4 s of noise, so that
    the first request does not pay for loading the compiled filter kernels (numba), the
    filter designs and scipy's lazy imports (seconds on a cold process)."""
    from mindprint.signal.pipeline import process_recording

    noise = np.random.default_rng(0).standard_normal((n_channels, int(4 * sfreq))) * 1e-5
    result = process_recording(noise, sfreq, [f"EEG{i}" for i in range(n_channels)])
    platform.liveness.assess(noise, sfreq, band=reusable_band(result.filtered, result.design))
    query_set(noise, sfreq, platform.replay_rule.hop).stored(platform.replay_rule.hop)


class _Clock:
    """Per-step wall time into ``timings`` (nothing when it is None), and the CPU time the
    request's thread spent on the step as ``cpu-<step>`` — under load the two differ by the
    waits (database, the verification slot, other threads holding the GIL)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()
        self.last_cpu = time.thread_time()

    def lap(self, step: str) -> None:
        if self.timings is not None:
            now, cpu = time.perf_counter(), time.thread_time()
            self.timings[step] = self.timings.get(step, 0.0) + now - self.last
            self.timings[f"cpu-{step}"] = self.timings.get(f"cpu-{step}", 0.0) + cpu - self.last_cpu
            self.last, self.last_cpu = now, cpu
