"""Consensus and reputation on a database of submissions (in-process SQLite)."""

from __future__ import annotations

from pathlib import Path

from mindprint.labeling.consensus import aggregate, reputation
from mindprint.labeling.store import Account, Project, Submission, TaskItem, make_engine, migrate, sessions


def _db(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    return sessions(engine)()


def test_dawid_skene_outvotes_an_unreliable_annotator(tmp_path: Path) -> None:
    db = _db(tmp_path)
    people = ["0xgood1", "0xgood2", "0xgood3", "0xnoisy"]
    db.add_all([Account(address=p) for p in people])
    db.add(
        Project(id=1, owner="0xgood1", name="p", label_schema={"kind": "classes", "classes": ["a", "b"]}, redundancy=4)
    )
    db.commit()
    truth = {t: "a" if t % 3 else "b" for t in range(1, 31)}
    for task, answer in truth.items():
        db.add(
            TaskItem(id=task, project_id=1, content={"text": str(task)}, gold={"answer": answer} if task <= 5 else None)
        )
    db.commit()  # parents first: no ORM relationships order the inserts
    good_scores = {"liveness": 0.95, "attention": 0.9, "authenticity": 1.0, "uniqueness": 1.0}
    for task, answer in truth.items():
        for person in people:
            if person == "0xnoisy":
                label = "b" if answer == "a" else "a"  # always wrong
            elif person == "0xgood3" and task % 5 == 0:
                label = "b" if answer == "a" else "a"  # sometimes wrong
            else:
                label = answer
            db.add(
                Submission(
                    cid=f"{person}-{task}",
                    task_id=task,
                    contributor=person,
                    device="00",
                    label={"value": label},
                    status="accepted",
                    scores=good_scores,
                    reasons={"reasons": []},
                    engagement=1.0,
                    gold_correct=(label == answer) if task <= 5 else None,
                )
            )
    db.commit()
    results = aggregate(db, 1)
    assert len(results) == 30
    assert sum(r.label == truth[r.task_id] for r in results) == 30
    assert reputation(db, "0xgood1") > reputation(db, "0xnoisy")
    assert aggregate(db, 2) == []
