"""Consensus labels and contributor reputation.

For each task, the accepted labels are aggregated twice — Dawid–Skene (crowd-kit),
which learns each annotator's confusion matrix from the overlap, and a majority vote
weighted by reputation — and the two posteriors are averaged. Reputation combines gold
accuracy (Beta(1, 1) posterior mean) with the mean verification scores of the
contributor's accepted samples, so a contributor who answers gold items well *and*
sends live, attentive EEG weighs more.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pandas as pd
from crowdkit.aggregation import DawidSkene, MajorityVote
from sqlalchemy import select
from sqlalchemy.orm import Session

from mindprint.labeling.store import Submission, TaskItem

__all__ = ["ConsensusLabel", "aggregate", "reputation"]


@dataclass(frozen=True, slots=True)
class ConsensusLabel:
    task_id: int
    label: str
    confidence: float
    annotators: int


def reputation(db: Session, contributor: str) -> float:
    """0–1: gold accuracy × mean verification quality of accepted samples."""
    rows = db.scalars(select(Submission).where(Submission.contributor == contributor)).all()
    gold = [r.gold_correct for r in rows if r.gold_correct is not None]
    accuracy = (sum(gold) + 1) / (len(gold) + 2)
    accepted = [r for r in rows if r.status == "accepted"]
    if not accepted:
        return accuracy * 0.5
    quality = sum(r.scores.get("liveness", 0) * r.scores.get("attention", 0) for r in accepted) / len(accepted)
    return float(accuracy * (0.5 + 0.5 * quality))


def aggregate(db: Session, project_id: int) -> list[ConsensusLabel]:
    """Consensus for every task of the project with at least one accepted label."""
    rows = db.execute(
        select(Submission.task_id, Submission.contributor, Submission.label)
        .join(TaskItem, TaskItem.id == Submission.task_id)
        .where(TaskItem.project_id == project_id, Submission.status == "accepted")
    ).all()
    if not rows:
        return []
    frame = pd.DataFrame(
        {"task": [r[0] for r in rows], "worker": [r[1] for r in rows], "label": [str(r[2]["value"]) for r in rows]}
    )
    skills = pd.Series({w: max(reputation(db, w), 1e-3) for w in frame["worker"].unique()})
    weighted = MajorityVote().fit(frame, skills=skills).probas_
    assert weighted is not None
    combined = weighted
    if frame["worker"].nunique() > 1 and len(frame) > frame["task"].nunique():
        learned = DawidSkene(n_iter=100).fit(frame).probas_
        if learned is not None:
            combined = (learned.reindex_like(weighted).fillna(0) + weighted) / 2
    counts: dict[int, int] = defaultdict(int)
    for task in frame["task"]:
        counts[int(task)] += 1
    results = []
    for task, probabilities in combined.iterrows():
        label = str(probabilities.idxmax())
        results.append(ConsensusLabel(int(task), label, float(probabilities.max()), counts[int(task)]))
    return sorted(results, key=lambda c: c.task_id)
