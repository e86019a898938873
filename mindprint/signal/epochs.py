"""Epochs around markers, with baseline correction and rejection.

An epoch is rejected when its quality (worst channel index) is below ``min_quality`` or
it overlaps an annotation whose kind is in ``reject_kinds``; the reason is kept so that
the platform can tell the contributor why a sample was not accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mindprint.core.errors import SignalError
from mindprint.signal.artifacts import Annotation

__all__ = ["Epoch", "make_epochs"]

DEFAULT_REJECT = ("blink", "muscle", "jump", "motion")


@dataclass(frozen=True, slots=True)
class Epoch:
    """One epoch: samples (n_channels, n_times) in volts, and why it was rejected, if it was.

    ``sample`` is the marker's sample index in the recording; ``start`` the epoch's first.
    """

    label: str
    sample: int
    start: int
    data: NDArray[np.float64]
    rejected: str | None = None

    @property
    def accepted(self) -> bool:
        return self.rejected is None


def make_epochs(
    data: NDArray[np.floating],
    sfreq: float,
    events: list[tuple[int, str]],
    *,
    tmin: float = -0.2,
    tmax: float = 0.8,
    baseline: tuple[float, float] | None = (-0.2, 0.0),
    annotations: list[Annotation] | None = None,
    reject_kinds: tuple[str, ...] = DEFAULT_REJECT,
    quality: NDArray[np.float64] | None = None,
    quality_window: int | None = None,
    min_quality: float = 0.5,
) -> list[Epoch]:
    """Cut epochs around ``events`` (sample index, label).

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_times)
        Filtered signal in volts.
    tmin, tmax : float
        Epoch limits in seconds relative to the event.
    baseline : (float, float) | None
        Interval (seconds, relative) whose per-channel mean is subtracted.
    annotations : list of Annotation
        Artifacts; an epoch overlapping one of ``reject_kinds`` is rejected.
    quality : ndarray, shape (n_windows, n_channels), optional
        Channel quality index per window of ``quality_window`` samples.

    Events too close to the recording's edges are returned rejected ("out of range").
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise SignalError(f"data must have shape (n_channels, n_times), got {x.shape}")
    if tmin >= tmax:
        raise SignalError(f"tmin ({tmin}) must be below tmax ({tmax})")
    first = int(round(tmin * sfreq))
    last = int(round(tmax * sfreq))
    if baseline is not None and not (tmin <= baseline[0] < baseline[1] <= tmax):
        raise SignalError(f"baseline {baseline} must lie within [tmin, tmax] = [{tmin}, {tmax}]")
    baseline_mask = None
    if baseline is not None:
        # on the epoch's actual sample grid, both ends included (as MNE does)
        times = np.arange(first, last + 1) / sfreq
        tolerance = 1e-3 / sfreq
        baseline_mask = (times >= baseline[0] - tolerance) & (times <= baseline[1] + tolerance)
    epochs = []
    for sample, label in events:
        start, stop = sample + first, sample + last + 1
        if start < 0 or stop > x.shape[1]:
            epochs.append(Epoch(label, sample, start, np.empty((x.shape[0], 0)), "out of range"))
            continue
        segment = x[:, start:stop].copy()
        if baseline_mask is not None:
            segment -= segment[:, baseline_mask].mean(axis=1, keepdims=True)
        reason = None
        t0, t1 = start / sfreq, stop / sfreq
        for annotation in annotations or ():
            if annotation.kind in reject_kinds and annotation.onset < t1 and annotation.end > t0:
                reason = f"overlaps {annotation.kind} at {annotation.onset:.2f} s"
                break
        if reason is None and quality is not None and quality_window:
            windows = quality[start // quality_window : max(start // quality_window + 1, -(-stop // quality_window))]
            if windows.size and float(windows.min()) < min_quality:
                reason = f"channel quality {float(windows.min()):.2f} below {min_quality}"
        epochs.append(Epoch(label, sample, start, segment, reason))
    return epochs
