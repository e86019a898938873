"""Artifact and state detection on recordings, as annotations.

Detectors (all thresholds adaptive to the recording: robust z-scores over its median):

- **blink** — frontal channels (Fp*, AF*) band-passed 0.5–8 Hz; peaks above
  max(``blink_volts``, 5 robust SD) lasting 50–600 ms.
- **muscle** — 20 Hz up to Nyquist − 5 Hz (capped at 100 Hz) with mains harmonics
  notched; RMS envelope over 250 ms; robust z above 5 on any channel (jaw clenches show
  on temporal channels).
- **jump** — sample-to-sample steps above max(``jump_volts``, 10 robust SD of steps).
- **motion** — accelerometer magnitude changing by more than ``motion_g`` (SD over 0.5 s).
- **eyes_closed_alpha** — occipital relative alpha (8–13 / 1–30 Hz) above
  ``alpha_ratio`` for at least ``alpha_min_seconds`` (a state, not an artifact: it tells
  eyes-closed rest from task engagement).

This module never imports mindprint.device.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal as sps

from mindprint.core.errors import SignalError
from mindprint.signal.filters import FilterDesign, design_filter, filter_offline
from mindprint.signal.spectral import window_spectra
from mindprint.signal.stats import median_mad_std

__all__ = ["Annotation", "ArtifactSettings", "detect_artifacts", "frontal_channels", "occipital_channels"]


@dataclass(frozen=True, slots=True)
class Annotation:
    """An annotated span: onset and duration in seconds from the first sample."""

    onset: float
    duration: float
    kind: str
    channels: tuple[str, ...] = ()

    @property
    def end(self) -> float:
        return self.onset + self.duration


@dataclass(frozen=True, slots=True)
class ArtifactSettings:
    """Detector thresholds (volts, g, ratios, seconds)."""

    blink_volts: float = 50e-6
    muscle_z: float = 5.0
    jump_volts: float = 250e-6
    motion_g: float = 0.05
    alpha_ratio: float = 0.35
    alpha_min_seconds: float = 4.0
    merge_seconds: float = 0.5


def frontal_channels(names: list[str] | tuple[str, ...]) -> list[int]:
    return [i for i, n in enumerate(names) if n.upper().startswith(("FP", "AF"))]


def occipital_channels(names: list[str] | tuple[str, ...]) -> list[int]:
    return [i for i, n in enumerate(names) if n.upper().startswith(("O", "PO"))]


def _robust(x: NDArray[np.float64], axis: int = -1) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The median and the robust SD along ``axis`` (kept), the SD floored above zero."""
    median, spread = median_mad_std(x, axis)
    return median, np.maximum(spread, 1e-15)


def _segments(mask: NDArray[np.bool_], sfreq: float, merge: float, min_duration: float) -> list[tuple[float, float]]:
    """Runs of True as (onset, duration) seconds, merging runs closer than ``merge``."""
    if not mask.any():
        return []
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    runs = [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    merged = [runs[0]]
    for start, stop in runs[1:]:
        if start - merged[-1][1] <= merge * sfreq:
            merged[-1][1] = stop
        else:
            merged.append([start, stop])
    return [(a / sfreq, (b - a) / sfreq) for a, b in merged if (b - a) / sfreq >= min_duration]


def _blinks(x: NDArray[np.float64], sfreq: float, names: list[str], s: ArtifactSettings) -> list[Annotation]:
    front = frontal_channels(names)
    if not front or sfreq < 20:
        return []
    low = filter_offline(x[front], design_filter(sfreq, 0.5, 8.0, order=2))
    trace = np.abs(low).max(axis=0)
    _, spread = _robust(low.mean(axis=0))
    height = max(s.blink_volts, 5 * float(spread[0]))
    peaks, _ = sps.find_peaks(trace, height=height, width=(0.05 * sfreq, 0.6 * sfreq), distance=int(0.2 * sfreq))
    return [Annotation(max(0.0, p / sfreq - 0.25), 0.5, "blink", tuple(names[i] for i in front)) for p in peaks]


@functools.lru_cache(maxsize=32)
def _muscle_band(sfreq: float, high: float, line: float | None) -> FilterDesign:
    """The muscle band (20 Hz to ``high``, order 4) with the mains harmonics notched (Q 10):
    one cascade, filtered in one zero-phase pass."""
    band = design_filter(sfreq, 20.0, high, order=4)
    harmonics = np.empty(0) if line is None else np.arange(line, sfreq / 2 - 1, line)
    notches = [design_filter(sfreq, None, None, notch=float(h), notch_q=10.0).sos for h in harmonics]
    sos = np.ascontiguousarray(np.vstack([band.sos, *notches]))
    return FilterDesign(sos, float(sfreq), 20.0, high, line, 4, 10.0)


def _moving_mean(x: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    """Each row's mean over ``width`` samples centred like ``np.convolve(row, ones(width) /
    width, mode="same")`` (zeros beyond the ends), from cumulative sums: all rows at once."""
    n = x.shape[1]
    sums = np.zeros((x.shape[0], n + 1))
    np.cumsum(x, axis=1, out=sums[:, 1:])
    end = np.arange(n) + (width - 1) // 2  # each window's last sample
    first, last = np.maximum(end - width + 1, 0), np.minimum(end, n - 1)
    return np.maximum(sums[:, last + 1] - sums[:, first], 0.0) / width  # never below 0 by rounding


def _muscle(
    x: NDArray[np.float64], sfreq: float, names: list[str], line: float | None, s: ArtifactSettings
) -> list[Annotation]:
    high = min(100.0, sfreq / 2 - 5)
    if high <= 25:
        return []
    hf = filter_offline(x, _muscle_band(sfreq, high, line))
    envelope = np.sqrt(_moving_mean(hf * hf, max(1, int(0.25 * sfreq))))
    median, spread = _robust(envelope)
    z = (envelope - median) / spread
    out = []
    for onset, duration in _segments(np.asarray((z > s.muscle_z).any(axis=0)), sfreq, s.merge_seconds, 0.1):
        a, b = int(onset * sfreq), int((onset + duration) * sfreq)
        involved = tuple(names[c] for c in np.flatnonzero((z[:, a:b] > s.muscle_z).any(axis=1)))
        out.append(Annotation(onset, duration, "muscle", involved))
    return out


def _jumps(x: NDArray[np.float64], sfreq: float, names: list[str], s: ArtifactSettings) -> list[Annotation]:
    steps = np.abs(np.diff(x, axis=1))
    _, spread = _robust(steps)
    threshold = np.maximum(s.jump_volts, 10 * spread)
    mask = np.zeros(x.shape[1], dtype=bool)
    mask[1:] = (steps > threshold).any(axis=0)
    out = []
    for onset, duration in _segments(mask, sfreq, 0.1, 0.0):
        a, b = int(onset * sfreq), int((onset + duration) * sfreq) + 1
        involved = tuple(names[c] for c in np.flatnonzero((steps[:, max(0, a - 1) : b] > threshold[:, :1]).any(axis=1)))
        out.append(Annotation(max(0.0, onset - 0.05), duration + 0.1, "jump", involved))
    return out


def _motion(accel: NDArray[np.float64], sfreq: float, s: ArtifactSettings) -> list[Annotation]:
    magnitude = np.sqrt((accel**2).sum(axis=0))
    width = max(2, int(0.5 * sfreq))
    shape = (magnitude.size - width + 1, width)
    if shape[0] <= 0:
        return []
    windows = np.lib.stride_tricks.sliding_window_view(magnitude, width)
    moving = np.zeros(magnitude.size, dtype=bool)
    moving[width // 2 : width // 2 + shape[0]] = windows.std(axis=1) > s.motion_g
    return [Annotation(o, d, "motion") for o, d in _segments(moving, sfreq, s.merge_seconds, 0.1)]


def _alpha(x: NDArray[np.float64], sfreq: float, names: list[str], s: ArtifactSettings) -> list[Annotation]:
    back = occipital_channels(names)
    if not back or sfreq < 64:
        return []
    spectra = window_spectra(x[back], sfreq, window_seconds=2.0, overlap=0.5, fmax=30.0)
    if spectra.psd.shape[1] == 0:
        return []
    f = spectra.freqs
    psd = spectra.psd.mean(axis=0)
    ratio = psd[:, (f >= 8) & (f < 13)].sum(axis=1) / np.maximum(psd[:, (f >= 1) & (f <= 30)].sum(axis=1), 1e-300)
    mask = np.zeros(x.shape[1], dtype=bool)
    for start, value in zip(spectra.starts, ratio, strict=True):
        if value > s.alpha_ratio:
            mask[start + spectra.window // 4 : start + 3 * spectra.window // 4] = True
    return [
        Annotation(o, d, "eyes_closed_alpha", tuple(names[i] for i in back))
        for o, d in _segments(mask, sfreq, 2.0, s.alpha_min_seconds)
    ]


def detect_artifacts(
    data: NDArray[np.floating],
    sfreq: float,
    channel_names: list[str] | tuple[str, ...],
    *,
    accel: NDArray[np.floating] | None = None,
    line_freq: float | None = None,
    settings: ArtifactSettings | None = None,
) -> list[Annotation]:
    """Detect blinks, muscle, jumps, motion and eyes-closed alpha.

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_times)
        EEG in volts, unfiltered (DC offsets are fine).
    sfreq : float
        Sampling rate in hertz.
    channel_names : sequence of str
        10-20 labels: blinks need Fp*/AF*, alpha needs O*/PO*.
    accel : ndarray, shape (n_axes, n_times), optional
        Accelerometer in g.
    line_freq : float | None
        Mains frequency to notch out of the muscle band.

    Returns
    -------
    list of Annotation
        Sorted by onset.
    """
    x = np.asarray(data, dtype=np.float64)
    names = list(channel_names)
    if x.ndim != 2 or x.shape[0] != len(names):
        raise SignalError(f"data must have shape ({len(names)}, n_times), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise SignalError("data holds NaN or infinite values")
    if x.shape[1] < int(2 * sfreq):
        raise SignalError(f"artifact detection needs at least 2 s of data, got {x.shape[1] / sfreq:.2f} s")
    s = settings or ArtifactSettings()
    x = x - x.mean(axis=1, keepdims=True)  # DC offsets out (every detector band-passes or differences)
    found = _blinks(x, sfreq, names, s) + _muscle(x, sfreq, names, line_freq, s) + _jumps(x, sfreq, names, s)
    found += _alpha(x, sfreq, names, s)
    if accel is not None:
        found += _motion(np.asarray(accel, dtype=np.float64), sfreq, s)
    return sorted(found, key=lambda a: (a.onset, a.kind))
