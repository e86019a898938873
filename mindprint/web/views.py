"""What the pages show, read from the platform database (no HTML here).

Every query is bounded: lists are paged (``LIMIT``), per-project aggregates are one
``GROUP BY`` each, and the agreement table (Dawid–Skene) is cached per project until a new
sample arrives. A sample's epoch is decrypted from the chunks it cites, as verification did.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Integer, String, case, cast, func, select
from sqlalchemy.orm import Session

from mindprint.core.ipld import decode_block
from mindprint.export.bids import pseudonym
from mindprint.labeling.store import (
    Account,
    ExportJob,
    Job,
    LabelOverride,
    Project,
    Submission,
    TaskItem,
    aware,
)
from mindprint.protocol.formats import SampleValue

__all__ = [
    "PAGE",
    "agreement",
    "epoch_payload",
    "explore",
    "operator_status",
    "progress",
    "review_queue",
    "visible_projects",
]

PAGE = 50  # rows per page of every list


def visible_projects(db: Session, account: Account) -> list[Project]:
    """Operators see every project; requesters their own."""
    query = select(Project).order_by(Project.id.desc())
    if account.role != "operator":
        query = query.where(Project.owner == account.address)
    return list(db.scalars(query.limit(200)))


def _bucket_sql(db: Session, width: int) -> Any:
    """``created`` as whole ``width``-second buckets since the epoch, computed by the database."""
    if db.get_bind().dialect.name == "sqlite":
        return cast(func.strftime("%s", Submission.created), Integer) / width
    return func.floor(func.extract("epoch", Submission.created) / width)


def progress(db: Session, project: Project) -> dict[str, Any]:
    """Items, items done (≥ redundancy accepted labels), contributors, acceptance and
    rejection reasons over time (hourly buckets, or per minute for a young project)."""
    items, gold = db.execute(
        # a JSON column stores None as JSON null, not SQL NULL: compare its text
        select(func.count(), func.count(case((cast(TaskItem.gold, String) != "null", 1)))).where(
            TaskItem.project_id == project.id
        )
    ).one()
    per_task = (
        select(Submission.task_id, func.count().label("n"))
        .join(TaskItem, TaskItem.id == Submission.task_id)
        .where(TaskItem.project_id == project.id, Submission.status == "accepted")
        .group_by(Submission.task_id)
        .subquery()
    )
    done = db.scalar(select(func.count()).select_from(per_task).where(per_task.c.n >= project.redundancy)) or 0
    accepted, rejected, contributors = db.execute(
        select(
            func.count(case((Submission.status == "accepted", 1))),
            func.count(case((Submission.status == "rejected", 1))),
            func.count(func.distinct(Submission.contributor)),
        )
        .join(TaskItem, TaskItem.id == Submission.task_id)
        .where(TaskItem.project_id == project.id)
    ).one()
    first = db.scalar(
        select(func.min(Submission.created))
        .join(TaskItem, TaskItem.id == Submission.task_id)
        .where(TaskItem.project_id == project.id)
    )
    width = 3600 if first is not None and (dt.datetime.now(dt.UTC) - aware(first)).total_seconds() > 6 * 3600 else 60
    bucket = _bucket_sql(db, width)
    series: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    of_project = (
        select(bucket.label("t"), Submission.status, func.count())
        .join(TaskItem, TaskItem.id == Submission.task_id)
        .where(TaskItem.project_id == project.id)
        .group_by("t", Submission.status)
    )
    for t, status, n in db.execute(of_project):
        series[int(t) * width][0 if status == "accepted" else 1] += n
    reasons: Counter[str] = Counter()
    by_reason: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    recent = db.execute(
        select(bucket.label("t"), Submission.reasons)
        .join(TaskItem, TaskItem.id == Submission.task_id)
        .where(TaskItem.project_id == project.id, Submission.status == "rejected")
        .order_by(Submission.created.desc())
        .limit(2_000)  # the reasons of the recent rejections; the counts above cover everything
    )
    for t, why in recent:
        for reason in (why or {}).get("reasons", [])[:3]:
            short = _short_reason(reason)
            reasons[short] += 1
            by_reason[short][int(t) * width] += 1
    if series:  # contiguous buckets (zeros where nothing happened), one empty bucket either side
        first_t, last_t = min(series), max(series)
        if (last_t - first_t) // width <= 1000:
            for t in range(first_t - width, last_t + 2 * width, width):
                series.setdefault(t, [0, 0])
    times = sorted(series)
    top = [r for r, _ in reasons.most_common(5)]
    total = accepted + rejected
    return {
        "items": items,
        "gold": gold,
        "done": done,
        "accepted": accepted,
        "rejected": rejected,
        "contributors": contributors,
        "acceptance": accepted / total if total else None,
        "reasons": reasons.most_common(10),
        "timeline": {
            "width": width,
            "t": times,
            "accepted": [series[t][0] for t in times],
            "rejected": [series[t][1] for t in times],
            "reasons": {r: [by_reason[r].get(t, 0) for t in times] for r in top},
        },
    }


def _short_reason(reason: str) -> str:
    """A reason without its numbers, so that like reasons count together."""
    head = reason.split(":")[0].split("(")[0].strip()
    return head[:80] or reason[:80]


@dataclass
class _AgreementCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: project → (stamp of the accepted samples it covers, result)
    entries: OrderedDict[int, tuple[tuple[int, str], dict[str, Any]]] = field(default_factory=OrderedDict)
    running: set[int] = field(default_factory=set)


_agreements = _AgreementCache()


def _stamp(db: Session, project_id: int) -> tuple[int, str]:
    count, latest = db.execute(
        select(func.count(), func.max(Submission.created))
        .join(TaskItem, TaskItem.id == Submission.task_id)
        .where(TaskItem.project_id == project_id, Submission.status == "accepted")
    ).one()
    overrides = db.scalar(
        select(func.max(LabelOverride.created))
        .join(TaskItem, TaskItem.id == LabelOverride.task_id)
        .where(TaskItem.project_id == project_id)
    )
    return int(count), f"{latest}|{overrides}"


def agreement(db: Session, project: Project, key: bytes) -> tuple[dict[str, Any] | None, bool]:
    """Dawid–Skene against (reputation-weighted) majority per item, each item's votes, and each
    contributor's reliability (agreement with the consensus, gold accuracy, reputation).

    Returns ``(result, fresh)``. EM over every label of a project is the one cost here that
    grows with the project, so no request pays it: a stale or missing result starts a
    background computation, and the page shows the last result (or "computing") meanwhile.
    """
    stamp = _stamp(db, project.id)
    with _agreements.lock:
        held = _agreements.entries.get(project.id)
        fresh = held is not None and held[0] == stamp
        if fresh or project.id in _agreements.running:
            return (held[1] if held else None), fresh
        _agreements.running.add(project.id)
    engine = db.get_bind()

    def compute() -> None:
        try:
            with Session(engine) as own:
                target = own.get(Project, project.id)
                assert target is not None
                result = _agreement(own, target, key)
            with _agreements.lock:
                _agreements.entries[project.id] = (stamp, result)
                _agreements.entries.move_to_end(project.id)
                while len(_agreements.entries) > 64:
                    _agreements.entries.popitem(last=False)
        finally:
            with _agreements.lock:
                _agreements.running.discard(project.id)

    threading.Thread(target=compute, name=f"mindprint-agreement-{project.id}", daemon=True).start()
    return (held[1] if held else None), False


def _agreement(db: Session, project: Project, key: bytes) -> dict[str, Any]:
    import pandas as pd
    from crowdkit.aggregation import DawidSkene, MajorityVote

    from mindprint.labeling.consensus import aggregate, reputation

    rows = db.execute(
        select(Submission.task_id, Submission.contributor, Submission.label, TaskItem.gold)
        .join(TaskItem, TaskItem.id == Submission.task_id)
        .where(TaskItem.project_id == project.id, Submission.status == "accepted")
    ).all()
    overrides = {
        o.task_id: o.label
        for o in db.scalars(
            select(LabelOverride)
            .join(TaskItem, TaskItem.id == LabelOverride.task_id)
            .where(TaskItem.project_id == project.id)
        )
    }
    if not rows:
        return {"items": [], "contributors": [], "agree": None, "classes": [], "overrides": overrides}
    frame = pd.DataFrame(
        {"task": [r[0] for r in rows], "worker": [r[1] for r in rows], "label": [str(r[2]["value"]) for r in rows]}
    )
    majority = MajorityVote().fit_predict(frame)
    learned = DawidSkene(n_iter=100).fit_predict(frame) if frame["worker"].nunique() > 1 else majority
    # the platform's consensus (what GET /projects/{id}/consensus answers), not a second definition
    consensus = {c.task_id: c.label for c in aggregate(db, project.id)}
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    for task, label in zip(frame["task"], frame["label"], strict=True):
        votes[int(task)][label] += 1
    schema = project.label_schema.get("classes") if project.label_schema.get("kind") == "classes" else None
    classes = list(schema or []) + sorted(set(frame["label"]) - set(schema or []))
    items = []
    for task in sorted(votes):
        ds, mv = str(learned.get(task, "")), str(majority.get(task, ""))
        items.append(
            {
                "task": task,
                "majority": mv,
                "dawid_skene": ds,
                "agree": ds == mv,
                "consensus": consensus.get(task, ds),
                "votes": [votes[task].get(c, 0) for c in classes],
                "n": sum(votes[task].values()),
                "override": overrides.get(task),
            }
        )
    final = {i["task"]: i["override"] or i["consensus"] for i in items}
    gold = {int(r[0]): str(r[3]["answer"]) for r in rows if isinstance(r[3], dict) and "answer" in r[3]}
    people: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # agree, n, gold right, gold n
    for task, worker, label in zip(frame["task"], frame["worker"], frame["label"], strict=True):
        entry = people[worker]
        entry[0] += label == final[int(task)]
        entry[1] += 1
        if int(task) in gold:
            entry[2] += label == gold[int(task)]
            entry[3] += 1
    contributors = [
        {
            "pseudonym": pseudonym(key, worker),
            "labels": n,
            "agreement": agree / n,
            "gold": (right / gold_n) if gold_n else None,
            "reputation": reputation(db, worker),
        }
        for worker, (agree, n, right, gold_n) in sorted(people.items(), key=lambda p: -p[1][1])[:PAGE]
    ]
    return {
        "items": items,
        "contributors": contributors,
        "agree": sum(1 for i in items if i["agree"]) / len(items),
        "classes": classes,
        "overrides": overrides,
    }


def review_queue(db: Session, project: Project, key: bytes, *, page: int = 0) -> list[dict[str, Any]]:
    """Items with accepted samples, least agreed first within the page: each sample to look at."""
    tasks = list(
        db.scalars(
            select(TaskItem)
            .where(TaskItem.project_id == project.id)
            .order_by(TaskItem.id)
            .offset(page * PAGE)
            .limit(PAGE)
        )
    )
    if not tasks:
        return []
    samples: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in db.execute(
        select(Submission.cid, Submission.task_id, Submission.contributor, Submission.label, Submission.scores)
        .where(Submission.task_id.in_([t.id for t in tasks]), Submission.status == "accepted")
        .limit(PAGE * 60)
    ):
        samples[row.task_id].append(
            {
                "cid": row.cid,
                "pseudonym": pseudonym(key, row.contributor),
                "label": str(row.label.get("value")),
                "liveness": float(row.scores.get("liveness", 0.0)),
            }
        )
    overrides = {
        o.task_id: o for o in db.scalars(select(LabelOverride).where(LabelOverride.task_id.in_([t.id for t in tasks])))
    }
    queue = []
    for task in tasks:
        labels = Counter(s["label"] for s in samples[task.id])
        queue.append(
            {
                "task": task,
                "samples": samples[task.id],
                "labels": labels.most_common(),
                "override": overrides.get(task.id),
                "split": len(labels) > 1,
            }
        )
    return queue


@dataclass(frozen=True, slots=True)
class Filters:
    project: int | None = None
    contributor: str | None = None  # a pseudonym
    verdict: str | None = None  # accepted | rejected
    min_liveness: float | None = None
    before: str | None = None  # keyset paging: the created time of the last row shown


def explore(db: Session, account: Account, key: bytes, filters: Filters) -> dict[str, Any]:
    """One page of samples (newest first) that this account may see, filtered in SQL (keyset paging)."""
    query = (
        select(
            Submission.cid,
            Submission.task_id,
            Submission.contributor,
            Submission.label,
            Submission.status,
            Submission.scores,
            Submission.created,
            TaskItem.project_id,
        )
        .join(TaskItem, TaskItem.id == Submission.task_id)
        .order_by(Submission.created.desc())
    )
    if account.role == "requester":
        query = query.join(Project, Project.id == TaskItem.project_id).where(Project.owner == account.address)
    elif account.role != "operator":
        query = query.where(Submission.contributor == account.address)
    if filters.project:
        query = query.where(TaskItem.project_id == filters.project)
    if filters.verdict in {"accepted", "rejected"}:
        query = query.where(Submission.status == filters.verdict)
    if filters.min_liveness is not None:
        query = query.where(Submission.scores["liveness"].as_float() >= filters.min_liveness)
    if filters.contributor:
        query = query.where(Submission.contributor.in_(_addresses_of(db, key, filters.contributor) or [""]))
    if filters.before:
        with contextlib.suppress(ValueError):
            query = query.where(Submission.created < dt.datetime.fromisoformat(filters.before))
    rows = [
        {
            "cid": r.cid,
            "project": r.project_id,
            "task": r.task_id,
            "pseudonym": pseudonym(key, r.contributor),
            "label": str(r.label.get("value")),
            "status": r.status,
            "scores": {k: float(v) for k, v in r.scores.items() if isinstance(v, int | float)},
            "created": aware(r.created),
        }
        for r in db.execute(query.limit(PAGE + 1))
    ]
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return {"rows": rows, "next": rows[-1]["created"].isoformat() if more else None}


_pseudonyms: dict[tuple[bytes, str], list[str]] = {}


def _addresses_of(db: Session, key: bytes, wanted: str) -> list[str]:
    """The addresses behind a pseudonym: one pass over the accounts (HMAC each), cached."""
    found = _pseudonyms.get((key, wanted))
    if found is None:
        found = [a for a in db.scalars(select(Account.address)) if pseudonym(key, a) == wanted]
        if found:  # a new account could still take an unknown pseudonym: only hits are kept
            _pseudonyms[(key, wanted)] = found
            if len(_pseudonyms) > 10_000:
                _pseudonyms.clear()
    return found


def epoch_payload(db: Session, platform: Any, row: Submission, *, max_points: int = 1000) -> dict[str, Any]:
    """A sample's epoch for plotting: filtered channels (µV), markers, PSD and channel quality.

    Decrypted from the chunks the sample cites, exactly as verification read them.
    """
    from mindprint.labeling.samples import cut_epoch
    from mindprint.platform.ingest import load_cited
    from mindprint.signal.pipeline import process_recording

    if row.sample_block is None:
        raise LookupError("this sample was stored without its signed block")
    sample = SampleValue.parse(decode_block(bytes(row.sample_block)))
    cited = load_cited(db, platform, row.contributor, sample.session, sample.chunks)
    header = cited.header
    epoch = cut_epoch(sample, header, cited.blocks)
    names = list(header.eeg_names)
    result = process_recording(epoch, header.sfreq, names)
    filtered = result.filtered
    step = max(1, filtered.shape[1] // max_points)
    sfreq = float(header.sfreq)
    # the epoch's first sample is at stimulus + tmin; its time axis is relative to the stimulus
    t0 = float(cited.rows[0].t0_ns + sample.start / sfreq * 1e9 - sample.stimulus_ns) / 1e9
    times = (t0 + np.arange(0, filtered.shape[1], step) / sfreq).round(4)
    spectra = result.spectra
    freqs = np.asarray(spectra.freqs)
    keep = (freqs >= 1) & (freqs <= 45)
    power = np.asarray(spectra.psd, dtype=np.float64).mean(axis=1)[:, keep]  # mean over windows: (channels, freqs)
    quality = result.quality_matrix()
    return {
        "sfreq": sfreq,
        "names": names,
        "t": times.tolist(),
        "channels": (filtered[:, ::step] * 1e6).round(2).tolist(),
        "stimulus": 0.0,
        "response": (sample.response_ns - sample.stimulus_ns) / 1e9,
        "psd": {"f": freqs[keep].round(2).tolist(), "p": np.log10(power * 1e12 + 1e-12).round(3).tolist()},
        "quality": (quality.mean(axis=0) if quality.size else np.ones(len(names))).round(3).tolist(),
    }


def operator_status(db: Session, platform: Any, settings: Any) -> dict[str, Any]:
    """Health at a glance: job queues, recent failures, chain and IPFS."""
    queues: dict[str, dict[str, int]] = defaultdict(dict)
    for kind, state, n in db.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)):
        queues[kind][state] = n
    failures = db.execute(
        select(Job.kind, Job.ref, Job.attempts, Job.last_error, Job.created)
        .where(Job.last_error.is_not(None))
        .order_by(Job.id.desc())
        .limit(20)
    ).all()
    exports = db.execute(select(ExportJob.state, func.count()).group_by(ExportJob.state)).all()
    chain: dict[str, Any] = {"chain_id": platform.chain_id, "registry": platform.registry_address}
    if platform.chain is not None:
        try:
            with platform.chain.serial():
                chain["block"] = int(platform.chain.w3.eth.block_number)
            chain["connected"] = True
        except Exception as err:  # a node that is down is what this page is for
            chain["connected"], chain["error"] = False, str(err)[:200]
    if platform.deployment is not None:
        from dataclasses import asdict

        chain["contracts"] = {k: v for k, v in asdict(platform.deployment).items() if isinstance(v, str)}
    ipfs: dict[str, Any] = {"url": settings.ipfs_url, "blockstore": str(settings.platform_dir / "blocks")}
    if settings.ipfs_url:
        from mindprint.ledger.ipfs import KuboClient

        try:
            with KuboClient(settings.ipfs_url, timeout=2.0, retries=1) as kubo:
                ipfs["version"], ipfs["connected"] = kubo.version(), True
        except Exception as err:
            ipfs["connected"], ipfs["error"] = False, str(err)[:200]
    counts = db.execute(
        select(
            func.count(case((Submission.status == "accepted", 1))),
            func.count(case((Submission.status == "rejected", 1))),
        )
    ).one()
    return {
        "queues": {k: dict(v) for k, v in queues.items()},
        "failures": failures,
        "exports": {state: n for state, n in exports},
        "chain": chain,
        "ipfs": ipfs,
        "accepted": counts[0],
        "rejected": counts[1],
        "accounts": db.scalar(select(func.count()).select_from(Account)),
    }
