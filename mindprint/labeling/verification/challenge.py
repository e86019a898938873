"""Challenge–response liveness: is there a physiological response time-locked to events
the platform chose?

A recording (or a forgery) made before the platform picked its event times cannot hold a
response locked to them. Two responses are scored:

- **evoked** (:func:`evoked_response`): the event-related potential. The trials' epochs
  are averaged; the statistic is the power of the average in a post-event window, as a
  z-score against the same average with each trial's sign flipped at random (under "no
  time-locked response" flipping signs changes nothing, so the null comes from the data
  itself: no threshold depends on amplitude, device or channel count).
- **alpha blocking / reactivity** (:func:`alpha_reactivity`): the log ratio of 8–13 Hz
  power after an eyes-closed (or eyes-open) prompt to the power before it.

``benchmarks/forgeries.py`` evaluates both on real recordings with known events (true
event times against shuffled and invented ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mindprint.core.errors import SignalError
from mindprint.signal.filters import design_filter, filter_offline

__all__ = ["EvokedResponse", "alpha_reactivity", "evoked_response"]


@dataclass(frozen=True, slots=True)
class EvokedResponse:
    z: float  # power of the time-locked average, in standard deviations of the sign-flip null
    trials: int
    power: float  # mean squared amplitude of the average in the window (V²)


def _epochs(
    data: NDArray[np.float64], sfreq: float, onsets: Sequence[float], tmin: float, tmax: float
) -> NDArray[np.float64]:
    first, last = int(round(tmin * sfreq)), int(round(tmax * sfreq))
    starts = [int(round(t * sfreq)) for t in onsets]
    kept = [s for s in starts if s + first >= 0 and s + last <= data.shape[1]]
    if not kept:
        return np.empty((0, data.shape[0], last - first))
    return np.stack([data[:, s + first : s + last] for s in kept])


def evoked_response(
    data: NDArray[np.floating],
    sfreq: float,
    onsets: Sequence[float],
    *,
    tmin: float = -0.2,
    tmax: float = 0.6,
    window: tuple[float, float] = (0.08, 0.5),
    band: tuple[float, float] = (1.0, 15.0),
    flips: int = 256,
    seed: int = 0,
) -> EvokedResponse:
    """The event-related response to ``onsets`` (seconds from the start of ``data``).

    ``data`` is (n_channels, n_times) in volts. Each trial is baseline-corrected on
    ``tmin``–0 s; the response is the mean power of the average over channels in ``window``.
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise SignalError("an evoked response needs finite (n_channels, n_times) data")
    filtered = filter_offline(x - x.mean(axis=1, keepdims=True), design_filter(sfreq, *band, order=2))
    epochs = _epochs(filtered, sfreq, onsets, tmin, tmax)
    if len(epochs) < 4:
        raise SignalError(f"an evoked response needs at least 4 trials inside the data, got {len(epochs)}")
    baseline = int(round(-tmin * sfreq))
    epochs = epochs - epochs[:, :, :baseline].mean(axis=2, keepdims=True)
    lo, hi = int(round((window[0] - tmin) * sfreq)), int(round((window[1] - tmin) * sfreq))
    inside = epochs[:, :, lo:hi]  # (trials, channels, times)
    power = float(np.mean(inside.mean(axis=0) ** 2))
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(flips, len(inside)))
    flat = inside.reshape(len(inside), -1)
    null = np.mean((signs @ flat / len(inside)) ** 2, axis=1)
    z = (power - float(null.mean())) / max(float(null.std()), 1e-30)
    return EvokedResponse(z, len(inside), power)


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
