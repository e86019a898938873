"""Authenticity, attention and uniqueness scores, and the accept/reject decision.

Each score is 0–1 with reasons. The decision accepts a sample only when it is
authentic (signatures, chain, timing, device binding), live (the liveness model's
cross-validated threshold), unique (no replay match) and attentive enough.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mindprint.device.session import SessionReport
from mindprint.labeling.verification.model import LivenessScore
from mindprint.labeling.verification.uniqueness import ReplayMatch

__all__ = ["Score", "Verdict", "attention_score", "authenticity_score", "decide", "uniqueness_score"]

MIN_RT_SECONDS = 0.15  # faster than this is anticipation or automation
MAX_RT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Score:
    value: float
    reasons: tuple[str, ...] = ()


def authenticity_score(report: SessionReport, *, device_bound: bool | None) -> Score:
    """From the session verification report and the on-chain device binding.

    ``device_bound`` is None when the binding could not be checked (no registry): the
    sample then scores 0.5 and cannot be accepted.
    """
    reasons = [str(issue) for issue in report.issues]
    if not report.ok:
        return Score(0.0, tuple(reasons) or ("session does not verify",))
    if device_bound is False:
        return Score(0.0, ("device is not bound to this contributor (or was revoked)",))
    if device_bound is None:
        return Score(0.5, ("device binding not checked",))
    return Score(1.0, ())


def uniqueness_score(match: ReplayMatch | None) -> Score:
    if match is None:
        return Score(1.0, ())
    how = "time-reversed " if match.reversed else ""
    return Score(
        0.0,
        (
            f"{how}replay of stored sample {match.owner} (offset {match.offset / 64:.2f} s, "
            f"{match.channels} channels, similarity {match.similarity:.2f})",
        ),
    )


def attention_score(
    engagement: float,
    baseline: Sequence[float],
    response_times: Sequence[float],
    gold_correct: int = 0,
    gold_total: int = 0,
) -> Score:
    """Engagement against the contributor's own baseline, response times, gold accuracy.

    Parameters
    ----------
    engagement : float
        The sample's engagement index β/(α+θ).
    baseline : sequence of float
        The contributor's earlier engagement values (at least 5 to be used).
    response_times : sequence of float
        Seconds from stimulus to response for this sample (and recent ones).
    gold_correct, gold_total : int
        Answers to gold items so far.
    """
    parts: list[float] = []
    reasons: list[str] = []
    history = np.log(np.asarray([b for b in baseline if b > 0], dtype=float))
    if engagement <= 0 or not math.isfinite(engagement):
        parts.append(0.0)
        reasons.append("no measurable engagement")
    elif history.size >= 5:
        z = (math.log(engagement) - float(history.mean())) / max(float(history.std()), 0.05)
        parts.append(1 / (1 + math.exp(-1.5 * (z + 2))))
        if z < -2:
            reasons.append(f"engagement {z:.1f} SD below the contributor's baseline")
    else:
        parts.append(0.75)
        reasons.append("no engagement baseline yet")
    times = np.asarray(response_times, dtype=float)
    if times.size:
        plausible = float(np.mean((times >= MIN_RT_SECONDS) & (times <= MAX_RT_SECONDS)))
        parts.append(plausible)
        if plausible < 1:
            reasons.append(f"{(1 - plausible):.0%} of response times outside {MIN_RT_SECONDS}–{MAX_RT_SECONDS:g} s")
        if times.size >= 5 and times.std() / max(times.mean(), 1e-9) < 0.05:
            parts.append(0.2)
            reasons.append("response times are machine-regular")
    if gold_total:
        accuracy = (gold_correct + 1) / (gold_total + 2)  # Beta(1, 1) posterior mean
        parts.append(min(1.0, accuracy / 0.8))
        if gold_total >= 3 and accuracy < 0.6:
            reasons.append(f"gold accuracy {gold_correct}/{gold_total}")
    value = float(np.exp(np.mean(np.log(np.maximum(parts, 1e-6))))) if parts else 0.5
    return Score(value, tuple(reasons))


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    scores: dict[str, float]
    reasons: list[str] = field(default_factory=list)


def decide(
    authenticity: Score,
    liveness: LivenessScore,
    uniqueness: Score,
    attention: Score,
    challenge: Score | None = None,
    *,
    min_attention: float = 0.5,
) -> Verdict:
    """Accept only when every score passes. ``challenge`` (projects with challenge–response
    liveness): 1 responded, 0.5 pending (fewer than K cue trials yet), 0 did not respond."""
    reasons = [*authenticity.reasons, *liveness.reasons, *uniqueness.reasons, *attention.reasons]
    raw = {
        "authenticity": authenticity.value,
        "liveness": liveness.score,
        "uniqueness": uniqueness.value,
        "attention": attention.value,
    }
    if challenge is not None:
        raw["challenge"] = challenge.value
        reasons += challenge.reasons
    # a score that is not a number (degenerate input) counts as 0 and says so: never NaN in the API
    scores = {name: float(value) if math.isfinite(value) else 0.0 for name, value in raw.items()}
    reasons += [f"{name} could not be computed" for name, value in raw.items() if not math.isfinite(value)]
    accepted = (
        scores["authenticity"] >= 1.0
        and liveness.accepted
        and math.isfinite(raw["liveness"])
        and scores["uniqueness"] >= 1.0
        and scores["attention"] >= min_attention
        and (challenge is None or scores["challenge"] >= 0.5)
    )
    return Verdict(accepted, scores, reasons)
