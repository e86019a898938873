"""Channel quality per window: a 0–1 index with the reasons behind it.

Criteria follow the PREP pipeline (Bigdely-Shamlo et al., 2015) adapted to short
windows and few channels:

========================  =====================================================
non-finite                any NaN or infinite sample → quality 0
railed                    ≥ 5 % of samples within 1 % of the ADC full scale
flat                      robust amplitude (1.4826 × MAD of the filtered signal)
                          below ``flat_volts``
line noise                power within ±1 Hz of the line frequency, relative to
                          1–45 Hz power, above ``line_ratio``
high-frequency noise      power above 45 Hz relative to 1–45 Hz power above
                          ``hf_ratio``, or a robust z-score above 5 across channels
poor correlation          maximum |r| with any other channel (1–45 Hz) below 0.4
                          (needs ≥ 3 channels)
high amplitude            robust amplitude above ``high_volts``
========================  =====================================================

Each failed criterion multiplies the index by its penalty; the reasons are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mindprint.core.errors import SignalError
from mindprint.signal.stats import mad_std, median_mad_std

__all__ = ["ChannelQuality", "QualityThresholds", "assess_window", "assess_windows"]


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Thresholds (volts, ratios) and penalties of the quality criteria."""

    full_scale_volts: float | None = None
    flat_volts: float = 0.5e-6
    high_volts: float = 150e-6
    line_ratio: float = 1.0
    hf_ratio: float = 1.0
    min_correlation: float = 0.4
    penalties: dict[str, float] = field(
        default_factory=lambda: {
            "non-finite": 0.0,
            "railed": 0.0,
            "flat": 0.0,
            "line noise": 0.8,
            "high-frequency noise": 0.5,
            "poor correlation": 0.6,
            "high amplitude": 0.5,
        }
    )


@dataclass(frozen=True, slots=True)
class ChannelQuality:
    """Quality of each channel in one window: index (0–1) and reasons."""

    index: NDArray[np.float64]
    reasons: tuple[tuple[str, ...], ...]

    @property
    def bad(self) -> NDArray[np.bool_]:
        return self.index < 0.5


def assess_window(
    raw: NDArray[np.floating],
    filtered: NDArray[np.floating],
    sfreq: float,
    *,
    line_freq: float | None = None,
    thresholds: QualityThresholds | None = None,
) -> ChannelQuality:
    """Assess one window.

    Parameters
    ----------
    raw : ndarray, shape (n_channels, n_times)
        Unfiltered window in volts (for rails, NaN and the spectrum above 45 Hz).
    filtered : ndarray, shape (n_channels, n_times)
        The same window band-passed 1–45 Hz (for amplitude and correlation).
    sfreq : float
        Sampling rate in hertz.
    line_freq : float | None
        Mains frequency, if known.
    """
    t = thresholds or QualityThresholds()
    raw = np.asarray(raw, dtype=np.float64)
    filtered = np.asarray(filtered, dtype=np.float64)
    if raw.ndim != 2 or raw.shape != filtered.shape:
        raise SignalError(
            f"raw and filtered must share shape (n_channels, n_times), got {raw.shape} and {filtered.shape}"
        )
    n_ch, n_t = raw.shape
    if n_t < 8:
        raise SignalError(f"a quality window needs at least 8 samples, got {n_t}")
    reasons: list[list[str]] = [[] for _ in range(n_ch)]
    finite = np.isfinite(raw).all(axis=1) & np.isfinite(filtered).all(axis=1)
    for c in np.flatnonzero(~finite):
        reasons[c].append("non-finite")
    safe_raw = np.where(np.isfinite(raw), raw, 0.0)
    safe_filtered = np.where(np.isfinite(filtered), filtered, 0.0)
    if t.full_scale_volts:
        railed = np.mean(np.abs(safe_raw) >= 0.99 * t.full_scale_volts, axis=1) >= 0.05
        for c in np.flatnonzero(railed):
            reasons[c].append("railed")
    amplitude = mad_std(safe_filtered)
    for c in np.flatnonzero(amplitude < t.flat_volts):
        reasons[c].append("flat")
    for c in np.flatnonzero(amplitude > t.high_volts):
        reasons[c].append("high amplitude")
    # spectrum of the raw window (Hann), detrended so DC offsets do not leak
    centered = safe_raw - safe_raw.mean(axis=1, keepdims=True)
    spectrum = np.abs(np.fft.rfft(centered * np.hanning(n_t), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_t, 1 / sfreq)
    in_band = spectrum[:, (freqs >= 1) & (freqs <= 45)].sum(axis=1) + 1e-300
    if line_freq is not None and line_freq + 1 < sfreq / 2:
        line = spectrum[:, np.abs(freqs - line_freq) <= 1].sum(axis=1) / in_band
        for c in np.flatnonzero(line > t.line_ratio):
            reasons[c].append("line noise")
    high = freqs > 45
    if line_freq is not None:
        for harmonic in np.arange(line_freq, sfreq / 2, line_freq):
            high &= np.abs(freqs - harmonic) > 2
    if high.any():
        hf = spectrum[:, high].sum(axis=1) / in_band
        centre, spread = median_mad_std(hf, axis=0)
        z = (hf - float(centre[0])) / max(float(spread[0]), 1e-12)
        noisy = (hf > t.hf_ratio) | ((z > 5) & (n_ch >= 4))
        for c in np.flatnonzero(noisy):
            reasons[c].append("high-frequency noise")
    if n_ch >= 3:
        usable = finite & (amplitude >= t.flat_volts)
        if usable.sum() >= 3:
            corr = np.corrcoef(safe_filtered[usable])
            np.fill_diagonal(corr, 0.0)
            best = np.nanmax(np.abs(corr), axis=1)
            for channel, value in zip(np.flatnonzero(usable).tolist(), best, strict=True):
                if value < t.min_correlation:
                    reasons[channel].append("poor correlation")
    index = np.ones(n_ch)
    for position, found in enumerate(reasons):
        for reason in found:
            index[position] *= t.penalties[reason]
    return ChannelQuality(index=index, reasons=tuple(tuple(r) for r in reasons))


def assess_windows(
    raw: NDArray[np.floating],
    filtered: NDArray[np.floating],
    sfreq: float,
    *,
    window_seconds: float = 2.0,
    line_freq: float | None = None,
    thresholds: QualityThresholds | None = None,
) -> list[ChannelQuality]:
    """:func:`assess_window` over consecutive non-overlapping windows."""
    n = int(round(window_seconds * sfreq))
    return [
        assess_window(raw[:, s : s + n], filtered[:, s : s + n], sfreq, line_freq=line_freq, thresholds=thresholds)
        for s in range(0, raw.shape[1] - n + 1, n)
    ]
