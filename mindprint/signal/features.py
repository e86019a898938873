"""Per-window EEG features from :class:`~mindprint.signal.spectral.WindowSpectra`.

Every feature is vectorised over channels and windows. Units: band powers in V²,
frequencies in Hz; ratios, entropy and exponents are unitless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mindprint.core.errors import SignalError
from mindprint.signal.spectral import BANDS, WindowSpectra, band_mask, band_powers

__all__ = [
    "FRONTAL_PAIRS",
    "WindowFeatures",
    "aperiodic_exponent",
    "compute_features",
    "frontal_asymmetry",
    "individual_alpha_frequency",
    "spectral_entropy",
]

#: (left, right) electrode pairs for frontal alpha asymmetry, in order of preference.
FRONTAL_PAIRS = (("F3", "F4"), ("F7", "F8"), ("AF3", "AF4"), ("AF7", "AF8"), ("Fp1", "Fp2"), ("F5", "F6"))
TOTAL_BAND = (1.0, 45.0)
APERIODIC_RANGE = (2.0, 40.0)
ALPHA_SEARCH = (7.0, 13.0)


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    """Features of each channel (axis 0) and window (axis 1).

    ``band_power`` and ``relative_power`` have a trailing band axis ordered as ``bands``.
    ``frontal_asymmetry`` is per window (NaN when no frontal pair exists).
    """

    bands: tuple[str, ...]
    band_power: NDArray[np.float64]
    relative_power: NDArray[np.float64]
    spectral_entropy: NDArray[np.float64]
    alpha_peak: NDArray[np.float64]
    aperiodic_exponent: NDArray[np.float64]
    engagement: NDArray[np.float64]
    frontal_asymmetry: NDArray[np.float64]
    starts: NDArray[np.int64]

    def band(self, name: str, relative: bool = False) -> NDArray[np.float64]:
        """Power in one band, shape (n_channels, n_windows)."""
        values = self.relative_power if relative else self.band_power
        return values[..., self.bands.index(name)]


def spectral_entropy(spectra: WindowSpectra, band: tuple[float, float] = TOTAL_BAND) -> NDArray[np.float64]:
    """Shannon entropy of the normalised PSD within ``band``, divided by its maximum (0–1)."""
    mask = band_mask(spectra.freqs, band, inclusive=True)
    p = spectra.psd[..., mask].astype(np.float64)
    p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)
    return h / np.log(mask.sum())


def individual_alpha_frequency(
    spectra: WindowSpectra, search: tuple[float, float] = ALPHA_SEARCH
) -> NDArray[np.float64]:
    """Peak frequency (Hz) in ``search``, refined by parabolic interpolation.

    NaN where the maximum sits on the edge of the search range (no peak there).
    """
    mask = band_mask(spectra.freqs, search, inclusive=True)
    index = np.flatnonzero(mask)
    p = np.log(np.maximum(spectra.psd[..., index].astype(np.float64), 1e-300))
    arg = np.argmax(p, axis=-1)
    inner = (arg > 0) & (arg < len(index) - 1)
    a = np.take_along_axis(p, np.clip(arg - 1, 0, len(index) - 1)[..., None], -1)[..., 0]
    b = np.take_along_axis(p, arg[..., None], -1)[..., 0]
    c = np.take_along_axis(p, np.clip(arg + 1, 0, len(index) - 1)[..., None], -1)[..., 0]
    denominator = a - 2 * b + c
    offset = np.where(inner & (denominator < 0), 0.5 * (a - c) / np.where(denominator == 0, 1, denominator), 0.0)
    peak = spectra.freqs[index][arg] + offset * spectra.df
    return np.where(inner, peak, np.nan)


def aperiodic_exponent(
    spectra: WindowSpectra,
    fit_range: tuple[float, float] = APERIODIC_RANGE,
    *,
    iterations: int = 2,
    keep_fraction: float = 0.6,
) -> NDArray[np.float64]:
    """1/f exponent χ of ``psd ∝ f^-χ`` (FOOOF/specparam "fixed" aperiodic mode).

    A line is fitted to log10(psd) against log10(f); then, like FOOOF's robust initial
    fit, only the ``keep_fraction`` of points lying lowest above it (not in peaks such
    as alpha) are kept and the line refitted. Vectorised closed-form least squares.
    """
    mask = band_mask(spectra.freqs, fit_range, inclusive=True)
    if mask.sum() < 4:
        raise SignalError(f"too few frequency bins in {fit_range} Hz to fit an aperiodic exponent")
    logf = np.log10(spectra.freqs[mask])
    logp = np.log10(np.maximum(spectra.psd[..., mask].astype(np.float64), 1e-300))
    weights = np.ones_like(logp)
    slope = np.zeros(logp.shape[:-1])
    for step in range(iterations + 1):
        w_sum = weights.sum(-1)
        mean_f = (weights * logf).sum(-1) / w_sum
        mean_p = (weights * logp).sum(-1) / w_sum
        df = logf - mean_f[..., None]
        slope = (weights * df * (logp - mean_p[..., None])).sum(-1) / np.maximum((weights * df**2).sum(-1), 1e-12)
        if step == iterations:
            break
        weights = lowest_fraction(logp - (mean_p[..., None] + slope[..., None] * df), keep_fraction)
    return -slope


def lowest_fraction(residual: NDArray[np.float64], keep_fraction: float) -> NDArray[np.float64]:
    """1.0 where ``residual`` is at or below its ``keep_fraction`` quantile along the last axis,
    else 0.0: what ``residual <= np.quantile(residual, keep_fraction, axis=-1, keepdims=True)``
    keeps (its linear interpolation never falls below the lower order statistic, nor reaches
    the next one), by one partition instead of quantile's sort and bookkeeping."""
    kth = int(np.floor(keep_fraction * (residual.shape[-1] - 1)))
    cutoff = np.partition(residual, kth, axis=-1)[..., kth : kth + 1]
    return (residual <= cutoff).astype(np.float64)


def frontal_asymmetry(
    alpha_power: NDArray[np.float64], channel_names: tuple[str, ...] | list[str]
) -> NDArray[np.float64]:
    """ln(alpha right) − ln(alpha left) for the first frontal pair present, per window."""
    lowered = [name.lower() for name in channel_names]
    for left, right in FRONTAL_PAIRS:
        if left.lower() in lowered and right.lower() in lowered:
            li, ri = lowered.index(left.lower()), lowered.index(right.lower())
            return np.log(np.maximum(alpha_power[ri], 1e-300)) - np.log(np.maximum(alpha_power[li], 1e-300))
    return np.full(alpha_power.shape[1:], np.nan)


def compute_features(spectra: WindowSpectra, channel_names: tuple[str, ...] | list[str]) -> WindowFeatures:
    """All window features at once.

    Parameters
    ----------
    spectra : WindowSpectra
        From :func:`~mindprint.signal.spectral.window_spectra` with ``fmax`` ≥ 45 Hz.
    channel_names : sequence of str
        EEG channel names (10-20 labels), for frontal asymmetry.
    """
    if spectra.freqs[-1] < TOTAL_BAND[1]:
        raise SignalError(f"spectra stop at {spectra.freqs[-1]:g} Hz; features need up to {TOTAL_BAND[1]:g} Hz")
    if len(channel_names) != spectra.psd.shape[0]:
        raise SignalError(f"{len(channel_names)} channel names for {spectra.psd.shape[0]} channels")
    powers = band_powers(spectra, BANDS)
    total = band_powers(spectra, {"total": TOTAL_BAND})[..., 0]
    relative = powers / np.maximum(total, 1e-300)[..., None]
    names = tuple(BANDS)
    theta, alpha, beta = (powers[..., names.index(b)] for b in ("theta", "alpha", "beta"))
    return WindowFeatures(
        bands=names,
        band_power=powers,
        relative_power=relative,
        spectral_entropy=spectral_entropy(spectra),
        alpha_peak=individual_alpha_frequency(spectra),
        aperiodic_exponent=aperiodic_exponent(spectra),
        engagement=beta / np.maximum(alpha + theta, 1e-300),
        frontal_asymmetry=frontal_asymmetry(alpha, channel_names),
        starts=spectra.starts,
    )
