"""Challenge–response liveness: is there a physiological response time-locked to events
the platform chose?

A recording (or a forgery) made before the platform picked its event times cannot hold a
response locked to them. Two responses are scored:

- **evoked** (:func:`evoked_response`): the event-related potential. The trials' epochs
  are averaged; the statistic is the power of the average in a post-event window, as a
  z-score against the same average with each trial's sign flipped at random (under "no
  time-locked response" flipping signs changes nothing, so the null comes from the data
  itself: no threshold depends on amplitude, device or channel count). Trials cut from one
  sample share its slow activity (cues 0.6 s apart), so on the platform the signs flip per
  *sample*, not per trial: independent units are what the null may exchange.
- **alpha blocking / reactivity** (:func:`alpha_reactivity`): the log ratio of 8–13 Hz
  power after an eyes-closed (or eyes-open) prompt to the power before it.

``benchmarks/forgeries.py`` evaluates both on real recordings with known events (true
event times against shuffled and invented ones).

**On the platform** (projects with ``challenge_cues`` > 0): every task lease carries a
challenge — a random nonce and 1–3 cue offsets the platform draws
(:func:`issue_challenge`: 0.3–2.15 s after the stimulus, at least 0.6 s apart, so no two
leases share a spacing a forger could pre-align). The companion flashes a cue at each
offset and inserts a ``cue`` marker when it is drawn; the sample carries ``{nonce,
cues_ns}`` under the device's signature. The platform checks the nonce and that each cue
came within :data:`CUE_TOLERANCE_MS` of its offset, cuts the trial around each cue
(:func:`cue_trials`), keeps the device's last ``K`` trials (a fixed number: the cost does
not grow with history) and scores the evoked response over them (:func:`trials_z`) — the
fifth score, ``challenge``, decided once ``K`` trials are in (:func:`challenge_score`).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mindprint.core.errors import SignalError
from mindprint.signal.filters import design_filter, filter_offline

__all__ = [
    "CUE_TOLERANCE_MS",
    "ChallengeScore",
    "EvokedResponse",
    "alpha_reactivity",
    "challenge_score",
    "cue_trials",
    "decidable",
    "evoked_response",
    "issue_challenge",
    "trials_z",
]

TMIN, TMAX = -0.2, 0.6  # a trial around its event, seconds
RESPONSE = (0.08, 0.5)  # where the evoked response is looked for
BAND = (1.0, 15.0)
CUE_TOLERANCE_MS = 250  # a cue drawn this late (or early) still answers its offset
# cue offsets after the stimulus: the last, even CUE_TOLERANCE_MS late, keeps its trial (to
# +0.6 s) inside the sample's epoch (to +3 s): 2150 + 250 + 600 = 3000 ms (until 2026-12-04
# the offsets reached 2200 ms, and a cue 200–250 ms late there was accepted as on time, then
# refused because its trial left the epoch)
OFFSETS_MS = (300, 2150)
MIN_GAP_MS = 600
MAX_CUES = 3  # 0.3–2.15 s holds three cues 0.6 s apart with 0.65 s left to draw them in


@dataclass(frozen=True, slots=True)
class EvokedResponse:
    z: float  # power of the time-locked average, in standard deviations of the sign-flip null
    trials: int
    power: float  # mean squared amplitude of the average in the window (V²)


def _trials(
    data: NDArray[np.floating],
    sfreq: float,
    onsets: Sequence[float],
    tmin: float,
    tmax: float,
    band: tuple[float, float],
    what: str,
) -> tuple[NDArray[np.float64], list[float]]:
    """Band-passed, baseline-corrected (``tmin``–0 s) trials around the ``onsets`` that fit
    inside ``data``, and the onsets left out."""
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise SignalError(f"{what} needs finite (n_channels, n_times) data")
    filtered = filter_offline(x - x.mean(axis=1, keepdims=True), design_filter(sfreq, *band, order=2))
    first, last = int(round(tmin * sfreq)), int(round(tmax * sfreq))
    kept, outside = [], []
    for onset in onsets:
        at = int(round(onset * sfreq))
        if at + first < 0 or at + last > x.shape[1]:
            outside.append(onset)
        else:
            kept.append(filtered[:, at + first : at + last])
    trials = np.asarray(kept).reshape(len(kept), x.shape[0], last - first)
    return trials - trials[:, :, :-first].mean(axis=2, keepdims=True), outside


def evoked_response(
    data: NDArray[np.floating],
    sfreq: float,
    onsets: Sequence[float],
    *,
    tmin: float = -0.2,
    tmax: float = 0.6,
    window: tuple[float, float] = (0.08, 0.5),
    band: tuple[float, float] = BAND,
    flips: int = 256,
    seed: int = 0,
) -> EvokedResponse:
    """The event-related response to ``onsets`` (seconds from the start of ``data``).

    ``data`` is (n_channels, n_times) in volts. Each trial is baseline-corrected on
    ``tmin``–0 s; the response is the mean power of the average over channels in ``window``.
    """
    epochs, _ = _trials(data, sfreq, onsets, tmin, tmax, band, "an evoked response")
    if len(epochs) < 4:
        raise SignalError(f"an evoked response needs at least 4 trials inside the data, got {len(epochs)}")
    z, power = _z(epochs, sfreq, tmin, window, flips, seed)
    return EvokedResponse(z, len(epochs), power)


def alpha_reactivity(
    data: NDArray[np.floating], sfreq: float, onset: float, *, before: float = 3.0, after: float = 3.0, gap: float = 0.5
) -> float:
    """log10(alpha power after ``onset`` / before it), skipping ``gap`` s around the prompt
    (positive when alpha rises, e.g. eyes closed on the prompt; negative when it is blocked)."""
    x = np.asarray(data, dtype=np.float64)
    alpha = filter_offline(x - x.mean(axis=1, keepdims=True), design_filter(sfreq, 8.0, 13.0, order=3))
    at = int(round(onset * sfreq))
    pre = alpha[:, max(0, at - int((before + gap) * sfreq)) : at - int(gap * sfreq)]
    post = alpha[:, at + int(gap * sfreq) : at + int((after + gap) * sfreq)]
    if pre.shape[1] < sfreq or post.shape[1] < sfreq:
        raise SignalError("alpha reactivity needs at least 1 s of data on both sides of the prompt")
    return float(np.log10(np.mean(post**2) / max(float(np.mean(pre**2)), 1e-40)))


def _z(
    epochs: NDArray[np.float64],
    sfreq: float,
    tmin: float,
    window: tuple[float, float],
    flips: int,
    seed: int,
    groups: Sequence[int] | NDArray[np.integer] | None = None,
) -> tuple[float, float]:
    """(z against the sign-flip null, power of the average) of baseline-corrected trials;
    ``groups`` (one integer per trial, 0…G−1) flips the trials of a group together."""
    lo, hi = int(round((window[0] - tmin) * sfreq)), int(round((window[1] - tmin) * sfreq))
    inside = epochs[:, :, lo:hi]  # (trials, channels, times)
    power = float(np.mean(inside.mean(axis=0) ** 2))
    rng = np.random.default_rng(seed)
    if groups is None:
        signs = rng.choice(np.array([-1.0, 1.0]), size=(flips, len(inside)))
    else:
        members = np.asarray(groups, dtype=np.int64)
        if members.shape != (len(inside),) or members.min(initial=0) < 0:
            raise ValueError("groups needs one non-negative integer per trial")
        signs = rng.choice(np.array([-1.0, 1.0]), size=(flips, int(members.max(initial=0)) + 1))[:, members]
    flat = inside.reshape(len(inside), -1)
    null = np.mean((signs @ flat / len(inside)) ** 2, axis=1)
    return (power - float(null.mean())) / max(float(null.std()), 1e-30), power


def issue_challenge(cues: int, draw: random.Random | None = None) -> dict[str, object]:
    """A lease's challenge: a random nonce and ``cues`` offsets (ms after the stimulus),
    drawn from the operating system's randomness (``draw``: another source, for benchmarks)."""
    if not 1 <= cues <= MAX_CUES:
        raise ValueError(f"a challenge has 1 to {MAX_CUES} cues, not {cues}")
    draw = draw or secrets.SystemRandom()
    # uniform over every placement with gaps of at least MIN_GAP_MS: order statistics in the
    # span left after the gaps, the i-th shifted by i gaps
    free = OFFSETS_MS[1] - OFFSETS_MS[0] - (cues - 1) * MIN_GAP_MS
    points = sorted(draw.randint(0, free) for _ in range(cues))
    offsets = [OFFSETS_MS[0] + point + i * MIN_GAP_MS for i, point in enumerate(points)]
    return {"nonce": secrets.token_hex(16), "offsets_ms": offsets}


def cue_trials(epoch: NDArray[np.floating], sfreq: float, cues: Sequence[float]) -> NDArray[np.float32]:
    """Trials (n_cues, n_channels, n_times) around ``cues`` (seconds from the epoch's first
    sample): the epoch band-passed 1–15 Hz, each trial baseline-corrected on −0.2–0 s.
    Raises :class:`SignalError` when a trial does not fit inside the epoch."""
    trials, outside = _trials(epoch, sfreq, cues, TMIN, TMAX, BAND, "cue trials")
    if outside:
        length = np.shape(epoch)[-1] / sfreq
        raise SignalError(f"a cue at {outside[0]:.2f} s leaves its trial outside the {length:.2f} s epoch")
    return trials.astype(np.float32)


def trials_z(
    trials: NDArray[np.floating],
    sfreq: float,
    *,
    groups: Sequence[int] | NDArray[np.integer] | None = None,
    seed: int = 0,
) -> float:
    """The evoked response of stored cue trials (see :func:`cue_trials`) as a sign-flip z;
    ``groups`` names each trial's sample (trials of one sample flip together).

    With G samples the z cannot exceed √(G(G−1)/2) (every sample's response identical and no
    noise): 5.3 at G = 8, 6 at G = 9. More cues per sample average noise away within a
    sample; assurance comes from the number of samples."""
    z, _ = _z(np.asarray(trials, dtype=np.float64), sfreq, TMIN, RESPONSE, 256, seed, groups)
    return z


@dataclass(frozen=True, slots=True)
class ChallengeScore:
    value: float  # 1 responded, 0 did not, 0.5 not decided yet
    reasons: tuple[str, ...]
    z: float | None


def decidable(trials: int, needed: int, *, samples: int | None = None, min_samples: int = 0) -> bool:
    """Whether a device's challenge can be decided: ``needed`` cue trials from at least
    ``min_samples`` samples (the one rule the platform's trial query and the score share)."""
    return trials >= needed and (samples is None or samples >= min_samples)


def challenge_score(
    z: float | None, trials: int, needed: int, min_z: float, *, samples: int | None = None, min_samples: int = 0
) -> ChallengeScore:
    """The fifth score: pending until ``needed`` cue trials of the device from at least
    ``min_samples`` samples are in (:func:`decidable`), then whether their evoked response
    reaches ``min_z``."""
    if z is None or not decidable(trials, needed, samples=samples, min_samples=min_samples):
        reason = f"challenge–response pending: {trials} of {needed} cue trials"
        if samples is not None and min_samples:
            reason += f" from {samples} of {min_samples} samples"
        return ChallengeScore(0.5, (reason,), None)
    if z >= min_z:
        return ChallengeScore(1.0, (), z)
    return ChallengeScore(
        0.0,
        (f"no response time-locked to the platform's cues over the last {trials} trials (z {z:.1f} < {min_z:g})",),
        z,
    )
