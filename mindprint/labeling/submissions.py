"""Submissions: verify a sample on arrival, score it, store it, queue pinning and anchoring.

Everything a submission goes through, in order (each failure is a clear reason):

1. size limits and decoding (sample block, session CAR, signatures);
2. the contributor holds an unexpired lease on the task; the sample is not a duplicate;
3. :func:`~mindprint.labeling.samples.check_sample` — session signatures and chain, the
   device and wallet signatures, the epoch cut from the signed chunks, the signal
   pipeline re-run and compared with the edge's features;
4. device binding (the contributor's EIP-712 signature, as in DeviceRegistry);
5. scores: authenticity, liveness (shipped model), uniqueness (replay index), attention
   (engagement against the contributor's earlier accepted samples, response time, gold);
6. the verdict is stored; an accepted sample's session is sealed (encrypted) into the
   blockstore, its data key wrapped for the platform, and ``pin`` and ``anchor`` jobs are
   queued. Nothing is lost if a later step fails: the submission row comes first.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from mindprint.core.errors import CryptoError, MindprintError
from mindprint.core.ipld import cid_for_block
from mindprint.device.session import SessionReport
from mindprint.labeling.samples import SampleError, SignedSample, check_sample
from mindprint.labeling.store import Assignment, Device, Job, Submission, TaskItem, aware, utcnow
from mindprint.labeling.verification.model import LivenessModel
from mindprint.labeling.verification.scores import attention_score, authenticity_score, decide, uniqueness_score
from mindprint.labeling.verification.uniqueness import FingerprintIndex, FingerprintStore
from mindprint.ledger.anchoring import Anchorer
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.crypto import KeyStore, RecipientKey, new_data_key, wrap_key
from mindprint.ledger.sealing import seal_session

logger = logging.getLogger(__name__)

MAX_SESSION_BYTES = 8 * 2**20
MAX_SAMPLE_BYTES = 64 * 2**10

__all__ = ["Platform", "SubmissionRejected", "bind_device", "device_typed_data", "submit"]


class SubmissionRejected(MindprintError):
    """A submission that cannot even be scored (HTTP status in ``status``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Platform:
    """Process-wide verification state shared by the API and the workers."""

    liveness: LivenessModel
    blockstore: Blockstore
    keys: KeyStore
    platform_key: RecipientKey
    chain_id: int = 1
    registry_address: str = "0x0000000000000000000000000000000000000000"
    index: FingerprintIndex = field(default_factory=FingerprintIndex)
    lock: threading.Lock = field(default_factory=threading.Lock)
    owners: dict[int, str] = field(default_factory=dict)
    fingerprints: FingerprintStore | None = None  # the replay index on disk
    anchorer: Anchorer | None = None  # set by `mindprint serve` / the worker
    chain: Any = None  # ChainClient of the operator, set by `mindprint serve`
    distributor: str | None = None


def device_typed_data(
    device: bytes, contributor: str, deadline: int, chain_id: int, registry: str, nonce: int = 0
) -> dict[str, Any]:
    """The DeviceRegistry's EIP-712 BindDevice message (same domain and types as the contract)."""
    return {
        "domain": {
            "name": "mindprint DeviceRegistry",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": registry,
        },
        "types": {
            "BindDevice": [
                {"name": "device", "type": "bytes32"},
                {"name": "contributor", "type": "address"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ]
        },
        "primaryType": "BindDevice",
        "message": {
            "device": device,
            "contributor": to_checksum_address(contributor),
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def bind_device(
    db: Session, platform: Platform, contributor: str, device_hex: str, deadline: int, signature: str
) -> Device:
    try:
        device = bytes.fromhex(device_hex.removeprefix("0x"))
    except ValueError as err:
        raise SubmissionRejected(422, "device must be a hex Ed25519 public key") from err
    if len(device) != 32:
        raise SubmissionRejected(422, "device must be 32 bytes")
    if deadline < utcnow().timestamp():
        raise SubmissionRejected(401, "binding signature expired")
    typed = device_typed_data(device, contributor, deadline, platform.chain_id, platform.registry_address)
    try:
        signer = Account.recover_message(encode_typed_data(full_message=typed), signature=signature)
    except Exception as err:  # eth-account raises several types
        raise SubmissionRejected(401, "binding signature does not verify") from err
    if signer != to_checksum_address(contributor):
        raise SubmissionRejected(401, "binding must be signed by the contributor's wallet")
    existing = db.get(Device, device.hex())
    if existing is not None and (existing.contributor != signer or existing.revoked):
        raise SubmissionRejected(409, "device is bound to another contributor or was revoked")
    record = existing or Device(device=device.hex(), contributor=signer, signature=signature, revoked=False)
    record.signature, record.deadline = signature, deadline
    db.add(record)
    db.commit()
    return record


def _decode(value: str, what: str, limit: int) -> bytes:
    if len(value) > limit * 4 // 3 + 8:
        raise SubmissionRejected(413, f"{what} exceeds {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise SubmissionRejected(422, f"{what} is not base64") from err


def _hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError as err:
        raise SubmissionRejected(422, f"{what} is not hex") from err


def submit(db: Session, platform: Platform, contributor: str, bundle: dict[str, str]) -> dict[str, Any]:
    """Verify, score and store one submission; returns the public verdict."""
    block = _decode(bundle["sample"], "sample", MAX_SAMPLE_BYTES)
    car = _decode(bundle["session_car"], "session_car", MAX_SESSION_BYTES)
    signed = SignedSample(
        block,
        cid_for_block(block),
        _hex(bundle["device_signature"], "device_signature"),
        _hex(bundle["wallet_signature"], "wallet_signature"),
    )
    cid = str(signed.cid)
    # The expensive part (signatures, the pipeline re-run, liveness, the replay index)
    # runs before the first query, so no database connection is held meanwhile.
    try:
        check = check_sample(signed, car, contributor=contributor, chain_id=platform.chain_id)
    except (SampleError, MindprintError) as err:
        raise SubmissionRejected(422, f"sample does not check out: {err}") from err
    liveness = platform.liveness.assess(check.epoch, check.sfreq)
    with platform.lock:
        match = platform.index.query(check.epoch, check.sfreq)
    if db.get(Submission, cid) is not None:
        raise SubmissionRejected(409, f"duplicate submission: sample {cid} was already submitted")
    task_id = int(check.value["task"])
    task = db.get(TaskItem, task_id)
    if task is None:
        raise SubmissionRejected(404, f"no task {task_id}")
    lease = db.scalar(select(Assignment).where(Assignment.task_id == task_id, Assignment.contributor == contributor))
    now = utcnow()
    if lease is None or lease.status != "leased" or aware(lease.lease_expires) < now:
        raise SubmissionRejected(409, "you hold no active lease on this task (GET /tasks/next first)")

    device = db.get(Device, bytes(check.value["device"]).hex())
    bound = device is not None and device.contributor == contributor and not device.revoked
    authenticity = authenticity_score(
        check.report if not check.problems else _failed(check.report, check.problems), device_bound=bound
    )
    uniqueness = uniqueness_score(match)
    engagement = float(check.recomputed.get("engagement") or 0.0)
    history = db.scalars(
        select(Submission)
        .where(Submission.contributor == contributor, Submission.status == "accepted")
        .order_by(Submission.created.desc())
        .limit(50)
    ).all()
    gold_answer = (task.gold or {}).get("answer") if task.gold else None
    gold_correct = None if gold_answer is None else check.value["label"] == gold_answer
    past_gold = [s.gold_correct for s in history if s.gold_correct is not None]
    if gold_correct is not None:
        past_gold.append(gold_correct)
    response_time = (int(check.value["response_ns"]) - int(check.value["stimulus_ns"])) / 1e9
    attention = attention_score(
        engagement, [s.engagement for s in history if s.engagement], [response_time], sum(past_gold), len(past_gold)
    )
    verdict = decide(authenticity, liveness, uniqueness, attention)
    status = "accepted" if verdict.accepted else "rejected"
    submission = Submission(
        cid=cid,
        task_id=task_id,
        contributor=contributor,
        device=bytes(check.value["device"]).hex(),
        label={"value": check.value["label"]},
        status=status,
        scores=verdict.scores,
        reasons={"reasons": verdict.reasons},
        engagement=engagement,
        gold_correct=gold_correct,
        session=str(check.value["session"]),
        sample_block=signed.block,
        device_signature=signed.device_signature.hex(),
        wallet_signature="0x" + signed.wallet_signature.hex(),
    )
    db.add(submission)
    lease.status = "submitted"
    db.commit()
    if verdict.accepted:
        with platform.lock:
            owner = len(platform.owners) + 1
            platform.owners[owner] = cid
            vectors, positions = platform.index.add(owner, check.epoch, check.sfreq)
        if platform.fingerprints is not None:  # durable: a restart still knows this EEG
            platform.fingerprints.save(cid, vectors, positions)
        session = str(check.value["session"])
        try:  # one data key per session: every sealed version of it opens with the same key
            data_key = platform.keys.data_key(session, platform.platform_key)
        except CryptoError:
            data_key = new_data_key()
            platform.keys.add(session, wrap_key(data_key, platform.platform_key.public_key, session))
        manifest = seal_session(car, session, data_key, platform.blockstore)
        submission.sealed_manifest = str(manifest)
        for kind in ("pin", "anchor"):
            db.add(Job(kind=kind, ref=cid))
        db.commit()
    return {
        "sample_cid": cid,
        "status": status,
        "scores": verdict.scores,
        "reasons": verdict.reasons,
        "task_id": task_id,
    }


def _failed(report: SessionReport, problems: list[str]) -> SessionReport:
    from mindprint.device.session import Issue

    failed = SessionReport(path=report.path, session=report.session, device=report.device)
    failed.issues = list(report.issues) + [Issue("sample", problem) for problem in problems]
    return failed
