"""Federated rounds on the platform: publish a model, relay secure aggregation, keep the sum only.

A round (:class:`~mindprint.labeling.store.FederatedRound`) names the model it starts from
(by CID), the training parameters and privacy budget every client applies, and moves
through the four steps of :mod:`mindprint.federated.secagg`. A step ends when every
client of the previous step has answered or when its deadline passes with at least the
threshold of them (clients that drop out are tolerated; fewer than the threshold fails
the round). At the end the platform unmasks the *sum* of the updates — it never sees one
client's update — applies their mean to the model, stores the new model and a round
record (model, previous model, parameters, contributors) in the blockstore, pins both and
queues the record for anchoring on chain through the worker's ordinary anchor job.
Contributors whose update is in the sum are rewarded in the next reward epoch.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from mindprint.core.errors import Conflict, InvalidRequest, NotFound, NotPermitted
from mindprint.core.ipld import decode_block, encode_block
from mindprint.federated.model import ShallowAlphaNet, decode_model, encode_model, flat_parameters, load_flat, new_model
from mindprint.federated.training import TrainParams
from mindprint.labeling.store import FederatedMessage, FederatedRound, aware, utcnow
from mindprint.labeling.worker import enqueue_once
from mindprint.platform.service import Platform

__all__ = ["ROUND_TYPE", "current_model", "model_block", "round_state", "start_round", "submit"]

ROUND_TYPE = "mindprint/round/v1"
STEPS = ("keys", "shares", "masked", "unmask")
#: the client set each step fixes when it ends
SET_OF = {"keys": "u1", "shares": "u2", "masked": "u3", "unmask": "u4"}
#: the set a step's senders must belong to
FROM = {"keys": None, "shares": "u1", "masked": "u2", "unmask": "u3"}
SHARE_CIPHERTEXT = 12 + (42 + 1 + 42 + 1 + 140) + 16
_advance_lock = threading.Lock()


def _model_cid_text(platform: Platform, block: bytes) -> str:
    cid = platform.blockstore.put(block, "dag-cbor")
    platform.blockstore.pin(cid)
    return str(cid)


def current_model(db: Session, platform: Platform) -> str:
    """The newest round's result, else the genesis model (created and pinned once)."""
    latest = db.scalar(
        select(FederatedRound.result_cid).where(FederatedRound.phase == "done").order_by(FederatedRound.id.desc())
    )
    if latest:
        return latest
    block, _ = encode_model(new_model(seed=0))
    return _model_cid_text(platform, block)


def load_model(platform: Platform, cid: str) -> tuple[bytes, ShallowAlphaNet]:
    """A model the platform holds, by CID: its block and the model decoded from it (once)."""
    from multiformats import CID

    try:
        parsed = CID.decode(cid)
    except Exception as err:  # multiformats raises several kinds (IndexError, KeyError, ValueError…)
        raise NotFound(f"no model {cid!r:.130}: not a CID") from err
    try:
        block = platform.blockstore.get(parsed)
    except (KeyError, FileNotFoundError, ValueError) as err:
        raise NotFound(f"no model {cid}") from err
    return block, decode_model(block)  # only models are served here


def model_block(platform: Platform, cid: str) -> bytes:
    return load_model(platform, cid)[0]


def start_round(
    db: Session,
    platform: Platform,
    params: TrainParams,
    *,
    epsilon_budget: float = 8.0,
    min_clients: int = 3,
    max_clients: int = 1000,
    phase_seconds: float = 60.0,
    model_cid: str | None = None,
) -> FederatedRound:
    """Publish a round (one at a time: an open round must end first)."""
    if not 2 <= min_clients <= max_clients <= 2000:
        raise InvalidRequest(
            "need 2 ≤ min_clients ≤ max_clients ≤ 2000 (secure aggregation hides one client among others)"
        )
    if not 0 < epsilon_budget <= 100 or not 1 <= phase_seconds <= 3600:
        raise InvalidRequest("epsilon_budget must lie in (0, 100], phase_seconds in [1, 3600]")
    if db.scalar(select(FederatedRound.id).where(FederatedRound.phase.in_(STEPS))):
        raise Conflict("a round is open; it must end before another starts")
    cid = model_cid or current_model(db, platform)
    model_block(platform, cid)
    rnd = FederatedRound(
        phase="keys",
        model_cid=cid,
        params={**params.to_dict(), "epsilon_budget": epsilon_budget},
        min_clients=min_clients,
        max_clients=max_clients,
        threshold=min_clients,
        phase_seconds=phase_seconds,
        phase_deadline=utcnow() + dt.timedelta(seconds=phase_seconds),
        members={},
    )
    db.add(rnd)
    db.commit()
    return rnd


def _senders(db: Session, round_id: int, step: str) -> list[str]:
    rows = db.scalars(
        select(FederatedMessage.sender).where(FederatedMessage.round == round_id, FederatedMessage.step == step)
    )
    return sorted(set(rows))


def _advance(db: Session, platform: Platform, rnd: FederatedRound) -> None:
    """End the current step if everyone answered or its deadline passed (idempotent)."""
    while rnd.phase in STEPS:
        step = rnd.phase
        senders = _senders(db, rnd.id, step)
        source = FROM[step]
        expected = rnd.members.get(source, []) if source else None
        everyone = len(senders) >= rnd.max_clients if expected is None else set(senders) >= set(expected)
        due = utcnow() >= aware(rnd.phase_deadline)
        if not everyone and not due:
            return
        needed = rnd.min_clients if step == "keys" else rnd.threshold
        if len(senders) < needed:
            if due:
                _fail(db, rnd, f"step {step}: {len(senders)} clients answered, {needed} needed")
            return
        members = dict(rnd.members)
        members[SET_OF[step]] = senders
        if step == "keys":
            rnd.threshold = max(rnd.min_clients // 2 + 1, len(senders) // 2 + 1, 2)
        rnd.members = members
        rnd.phase_deadline = utcnow() + dt.timedelta(seconds=rnd.phase_seconds)
        if step == "unmask":
            _finish(db, platform, rnd)
        else:
            rnd.phase = STEPS[STEPS.index(step) + 1]
        db.commit()


def _fail(db: Session, rnd: FederatedRound, why: str) -> None:
    rnd.phase = "failed"
    rnd.error = why
    rnd.finished = utcnow()
    db.commit()


def _finish(db: Session, platform: Platform, rnd: FederatedRound) -> None:
    from mindprint.federated.secagg import unmask_sum

    _, model = load_model(platform, rnd.model_cid)
    start = flat_parameters(model)
    keys = {m.sender: (m.body[:32], m.body[32:]) for m in _messages(db, rnd.id, "keys")}
    masked = {m.sender: np.frombuffer(m.body, dtype="<u4") for m in _messages(db, rnd.id, "masked")}
    reveals = {}
    for m in _messages(db, rnd.id, "unmask"):
        value = decode_block(m.body)
        reveals[m.sender] = {v: (str(kind), bytes(share)) for v, (kind, share) in value.items()}
    try:
        total = unmask_sum(str(rnd.id), keys, rnd.members["u2"], masked, reveals, rnd.threshold, len(start))
    except InvalidRequest as err:
        _fail(db, rnd, f"unmasking failed: {err}")
        return
    contributors = sorted(masked)
    load_flat(model, start + (total / len(contributors)).astype(np.float32))
    block, _ = encode_model(model)
    result = _model_cid_text(platform, block)
    params = TrainParams.from_dict(rnd.params)
    record = encode_block(
        {
            "type": ROUND_TYPE,
            "round": rnd.id,
            "previous": rnd.model_cid,
            "model": result,
            "params": rnd.params,
            "contributors": contributors,
            "aggregation": "secagg-bonawitz2017/fedavg",
            "privacy": {"mechanism": "dp-sgd", "noise_multiplier": params.noise_multiplier, "clip": params.clip},
        }
    )
    record_cid = _model_cid_text(platform, record)
    rnd.result_cid = result
    rnd.record_cid = record_cid
    rnd.phase = "done"
    rnd.finished = utcnow()
    # pinned to the IPFS node too when one is configured (the worker's pin jobs), anchored on chain
    for kind, ref in (("pin", result), ("pin", record_cid), ("anchor", record_cid)):
        enqueue_once(db, kind, ref)


def _messages(db: Session, round_id: int, step: str) -> list[FederatedMessage]:
    return list(
        db.scalars(select(FederatedMessage).where(FederatedMessage.round == round_id, FederatedMessage.step == step))
    )


def _round(db: Session, platform: Platform, round_id: int) -> FederatedRound:
    """The round, row-locked on PostgreSQL, with a due step ended; call under ``_advance_lock``."""
    query = select(FederatedRound).where(FederatedRound.id == round_id)
    if db.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()
    rnd = db.scalar(query)
    if rnd is None:
        raise NotFound(f"no round {round_id}")
    _advance(db, platform, rnd)
    return rnd


def round_state(db: Session, platform: Platform, round_id: int | None, address: str | None = None) -> dict[str, Any]:
    """A round as a client sees it (the newest when ``round_id`` is None); ends a step that is due."""
    if round_id is None:
        round_id = db.scalar(select(FederatedRound.id).order_by(FederatedRound.id.desc()))
        if round_id is None:
            raise NotFound("no federated round yet")
    with _advance_lock:
        rnd = _round(db, platform, round_id)
    params = TrainParams.from_dict(rnd.params)
    state: dict[str, Any] = {
        "id": rnd.id,
        "phase": rnd.phase,
        "model_cid": rnd.model_cid,
        "params": rnd.params,
        "threshold": rnd.threshold,
        "min_clients": rnd.min_clients,
        "phase_deadline": aware(rnd.phase_deadline).isoformat(),
        "members": {k: list(v) for k, v in rnd.members.items()},
        "result_cid": rnd.result_cid,
        "record_cid": rnd.record_cid,
        "error": rnd.error,
        "privacy_per_round": {"noise_multiplier": params.noise_multiplier, "local_epochs": params.local_epochs},
    }
    if address is not None and rnd.phase == "shares":
        state["keys"] = {
            m.sender: {"c_pk": m.body[:32].hex(), "s_pk": m.body[32:].hex()} for m in _messages(db, rnd.id, "keys")
        }
    if address is not None and rnd.phase == "masked":
        state["inbox"] = {
            m.sender: m.body.hex()
            for m in db.scalars(
                select(FederatedMessage).where(
                    FederatedMessage.round == rnd.id,
                    FederatedMessage.step == "shares",
                    FederatedMessage.recipient == address,
                )
            )
            if m.sender in rnd.members.get("u2", [])
        }
    return state


def submit(
    db: Session, platform: Platform, round_id: int, step: str, address: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Store ``address``'s message for ``step`` (validated; a second, different message is refused)."""
    if step not in STEPS:
        raise NotFound(f"no step {step}")
    with _advance_lock:
        return _submit(db, platform, round_id, step, address, body)


def _submit(
    db: Session, platform: Platform, round_id: int, step: str, address: str, body: dict[str, Any]
) -> dict[str, Any]:
    rnd = _round(db, platform, round_id)
    if rnd.phase != step:
        raise Conflict(f"round {rnd.id} is at step {rnd.phase}, not {step}")
    source = FROM[step]
    if source and address not in rnd.members.get(source, []):
        raise NotPermitted(f"{address} is not among the clients of step {source} of round {rnd.id}")
    if step == "keys" and len(_senders(db, rnd.id, "keys")) >= rnd.max_clients:
        raise Conflict(f"round {rnd.id} is full")
    rows = _validate(platform, rnd, step, address, body)
    held = {(m.recipient, m.body) for m in _messages(db, rnd.id, step) if m.sender == address}
    if held:
        if held == {(r, b) for r, b in rows}:
            return {"stored": False, "phase": rnd.phase}
        raise Conflict(f"{address} already sent a different {step} message in round {rnd.id}")
    db.add_all(FederatedMessage(round=rnd.id, step=step, sender=address, recipient=r, body=b) for r, b in rows)
    db.commit()
    _advance(db, platform, rnd)
    return {"stored": True, "phase": rnd.phase}


def _hex(value: Any, what: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError as err:
        raise InvalidRequest(f"{what} must be hex") from err
    if size is not None and len(raw) != size:
        raise InvalidRequest(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def _validate(
    platform: Platform, rnd: FederatedRound, step: str, address: str, body: dict[str, Any]
) -> list[tuple[str, bytes]]:
    if step == "keys":
        return [("", _hex(body.get("c_pk"), "c_pk", 32) + _hex(body.get("s_pk"), "s_pk", 32))]
    if step == "shares":
        shares = body.get("shares")
        u1 = set(rnd.members["u1"])
        if not isinstance(shares, dict) or set(shares) != u1 - {address}:
            raise InvalidRequest("shares must hold one ciphertext for every other client of the round")
        return [(v, _hex(c, f"share for {v}", SHARE_CIPHERTEXT)) for v, c in sorted(shares.items())]
    if step == "masked":
        length = sum(p.numel() for p in load_model(platform, rnd.model_cid)[1].parameters())
        vector = _hex(body.get("vector"), "vector", 4 * length)
        return [("", vector)]
    reveals = body.get("reveals")
    u2 = set(rnd.members["u2"])
    # a client reveals what it holds of every other client of U2, and its own self-mask share
    if not isinstance(reveals, dict) or not set(reveals) <= u2:
        raise InvalidRequest("reveals must name clients of the round's shares step")
    value: dict[str, list[Any]] = {}
    for v, pair in reveals.items():
        if not isinstance(pair, list) or len(pair) != 2 or pair[0] not in ("b", "s"):
            raise InvalidRequest(f'reveal for {v} must be ["b" or "s", share hex]')
        if (pair[0] == "b") != (v in rnd.members["u3"]):
            raise InvalidRequest(f"reveal for {v} is of the wrong kind: b for survivors, s for drop-outs only")
        value[v] = [pair[0], _hex(pair[1], f"share of {v}", 70)]
    return [("", encode_block(value))]
