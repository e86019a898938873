"""Challenge–response on the platform: check a sample's answer to its lease's challenge and
score the evoked response over the device's last ``K`` cue trials.

The lease drew the challenge (:func:`~mindprint.labeling.verification.challenge.issue_challenge`);
the sample signs ``{nonce, cues_ns}``. A sample that does not answer (no challenge, another
lease's nonce, a cue missing or more than ``CUE_TOLERANCE_MS`` off its offset, a trial
outside the epoch) scores 0 with the reason. Otherwise its trials join the device's last
``K − n`` stored trials of the same shape (one indexed query, a fixed number of rows: the
cost does not grow with the device's history) and the evoked response over them decides,
once ``K`` are in from at least ``challenge_min_samples`` samples; the null flips the
trials of one sample together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from mindprint.core.errors import SignalError
from mindprint.labeling.samples import SampleCheck
from mindprint.labeling.store import CueTrial
from mindprint.labeling.verification.challenge import (
    CUE_TOLERANCE_MS,
    MAX_CUES,
    ChallengeScore,
    challenge_score,
    cue_trials,
    decidable,
    trials_z,
)
from mindprint.platform.service import Platform
from mindprint.protocol.formats import SampleValue

__all__ = ["ChallengeCheck", "check_challenge", "store_trials"]

MIN_TRIALS_FOR_Z = 4


@dataclass(frozen=True, slots=True)
class ChallengeCheck:
    score: ChallengeScore
    trials: NDArray[np.float32] | None = None  # this sample's cue trials, to store with it


def _refused(reason: str) -> ChallengeCheck:
    return ChallengeCheck(ChallengeScore(0.0, (reason,), None))


def check_challenge(
    db: Session, platform: Platform, issued: dict[str, Any] | None, sample: SampleValue, check: SampleCheck
) -> ChallengeCheck | None:
    """The challenge score of ``sample`` (None when its lease carried no challenge)."""
    if not issued:
        return None
    answered = sample.challenge
    if answered is None:
        return _refused("the sample does not answer its lease's challenge (no cues)")
    if answered["nonce"] != issued["nonce"]:
        return _refused("the sample answers another lease's challenge")
    offsets, cues = list(issued["offsets_ms"]), list(answered["cues_ns"])
    if len(cues) != len(offsets):
        return _refused(f"the sample signs {len(cues)} cues, its challenge has {len(offsets)}")
    for i, (cue, offset) in enumerate(zip(cues, offsets, strict=True)):
        late_ms = (cue - sample.stimulus_ns) / 1e6 - offset
        if abs(late_ms) > CUE_TOLERANCE_MS:
            return _refused(
                f"cue {i + 1} came {late_ms:+.0f} ms off the challenge's {offset} ms (±{CUE_TOLERANCE_MS} allowed)"
            )
    try:
        trials = cue_trials(check.epoch, check.sfreq, [(cue - check.t0_ns) / 1e9 for cue in cues])
    except SignalError as err:
        return _refused(f"cue trials: {err}")
    n, channels, times = trials.shape
    # the last K trials, and more when they come from fewer than the platform's minimum of
    # samples (at most MAX_CUES per sample: a fixed bound, not the device's history)
    enough = max(platform.challenge_trials, platform.challenge_min_samples * MAX_CUES)
    stored = db.execute(
        select(CueTrial.sample, CueTrial.data)
        .where(CueTrial.device == sample.device.hex(), CueTrial.n_channels == channels, CueTrial.n_times == times)
        .order_by(CueTrial.id.desc())
        .limit(max(0, enough - n))
    ).all()
    # trials of one sample flip together (they share its slow activity): group by sample,
    # newest first, until K trials from at least the minimum of samples are in
    names: dict[str, int] = {}
    groups = [0] * n
    for cid, _ in stored:
        decided = decidable(
            len(groups), platform.challenge_trials, samples=1 + len(names), min_samples=platform.challenge_min_samples
        )
        if decided and cid not in names:  # whole samples only
            break
        groups.append(1 + names.setdefault(cid, len(names)))
    previous = [np.frombuffer(blob, dtype=np.float32).reshape(channels, times) for _, blob in stored[: len(groups) - n]]
    stack = np.concatenate([trials, np.asarray(previous, dtype=np.float32).reshape(-1, channels, times)])
    z = trials_z(stack, check.sfreq, groups=groups) if len(stack) >= MIN_TRIALS_FOR_Z else None
    score = challenge_score(
        z,
        len(stack),
        platform.challenge_trials,
        platform.challenge_min_z,
        samples=1 + len(names),
        min_samples=platform.challenge_min_samples,
    )
    return ChallengeCheck(score, trials)


def store_trials(db: Session, device: bytes, sample_cid: str, trials: NDArray[np.float32], sfreq: float) -> None:
    """Add a sample's cue trials (committed with its submission)."""
    _, channels, times = trials.shape
    db.add_all(
        CueTrial(
            device=device.hex(),
            sample=sample_cid,
            n_channels=channels,
            n_times=times,
            sfreq=float(sfreq),
            data=np.ascontiguousarray(trial, dtype=np.float32).tobytes(),
        )
        for trial in trials
    )
