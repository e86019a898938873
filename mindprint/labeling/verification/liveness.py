"""Liveness: does a window look like EEG from a human head?

Features (one row per window), each with a physiological reason to differ between a
head and a forgery:

``exponent``          1/f aperiodic exponent (human scalp EEG ≈ 1–3; white noise ≈ 0)
``fit_r2``            how well a power law explains the 2–40 Hz spectrum
``tone``              strongest narrow spectral peak over its ±3 Hz neighbourhood, mains
                      excluded (pure tones: synthetic boards, signal generators)
``entropy``           spectral entropy 1–45 Hz
``log_rms``           log10 of the robust amplitude in volts (a head gives µV)
``correlation``       median |r| between channels (volume conduction and a shared
                      reference make scalp channels covary; independent or shuffled
                      channels do not)
``corr_spread``       spread of the pairwise |r| (neighbours covary more than distant pairs)
``envelope_cv``       coefficient of variation of the alpha-band amplitude envelope
                      (alpha comes in bursts; Gaussian noise gives a Rayleigh envelope)
``asymmetry``         time-reversal asymmetry (third moment of increments): linear
                      Gaussian processes — phase-randomised surrogates — have none
``kurtosis``          excess kurtosis of the band-passed signal
``flat_fraction``     fraction of repeated consecutive samples (stuck or synthetic data)
``low_high``          log ratio of 1–8 Hz to 13–45 Hz power (spectral shape)

A window is expected with at least 2 channels, in volts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal as sps
from scipy.stats import kurtosis

from mindprint.core.errors import SignalError
from mindprint.signal.filters import design_filter, filter_offline
from mindprint.signal.spectral import window_spectra

FEATURES = (
    "exponent",
    "fit_r2",
    "tone",
    "entropy",
    "log_rms",
    "correlation",
    "corr_spread",
    "envelope_cv",
    "asymmetry",
    "kurtosis",
    "flat_fraction",
    "low_high",
)

__all__ = ["FEATURES", "LivenessFeatures", "liveness_features"]


@dataclass(frozen=True, slots=True)
class LivenessFeatures:
    """Feature matrix (n_windows, n_features) and window start samples."""

    values: NDArray[np.float64]
    starts: NDArray[np.int64]
    names: tuple[str, ...] = FEATURES

    def column(self, name: str) -> NDArray[np.float64]:
        return self.values[:, self.names.index(name)]


def _line_mask(freqs: NDArray[np.float64]) -> NDArray[np.bool_]:
    mask = np.ones_like(freqs, dtype=bool)
    for line in (50.0, 60.0):
        mask &= np.abs(freqs - line) > 1.5
    return mask


EDGE_SECONDS = 0.25  # filter edge effects: windows start and end this far inside the data


def liveness_features(
    data: NDArray[np.floating], sfreq: float, *, window_seconds: float = 2.0, step_seconds: float = 2.0
) -> LivenessFeatures:
    """Features of consecutive windows of a recording (the outer 0.25 s are left out).

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_times)
        EEG in volts (raw; DC offsets allowed).
    sfreq : float
        Sampling rate in hertz (≥ 90 Hz: the features use up to 45 Hz).
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise SignalError(f"liveness needs (n_channels >= 2, n_times) data, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise SignalError("data holds NaN or infinite values")
    if sfreq < 90:
        raise SignalError(f"liveness needs a sampling rate of at least 90 Hz, got {sfreq}")
    window = int(round(window_seconds * sfreq))
    step = int(round(step_seconds * sfreq))
    edge = int(round(EDGE_SECONDS * sfreq))
    if x.shape[1] < window + 2 * edge:
        needed = window_seconds + 2 * EDGE_SECONDS
        raise SignalError(f"need at least {needed:g} s of data, got {x.shape[1] / sfreq:.2f} s")
    flat_fraction_all = np.abs(np.diff(x, axis=1)) < 1e-12
    band = filter_offline(x, design_filter(sfreq, 1.0, 45.0))
    alpha = filter_offline(x, design_filter(sfreq, 8.0, 13.0, order=3))
    envelope = np.abs(sps.hilbert(alpha, axis=1))
    inner = band[:, edge : band.shape[1] - edge]
    spectra = window_spectra(inner, sfreq, window_seconds=window_seconds, overlap=1 - step / window, fmax=45.0)
    f = spectra.freqs
    starts = spectra.starts + edge
    rows = []
    fit_band = (f >= 2) & (f <= 40) & _line_mask(f)
    logf = np.log10(f[fit_band])
    pairs = np.triu_indices(x.shape[0], 1)
    for w, start in enumerate(starts):
        seg = band[:, start : start + window]
        psd = spectra.psd[:, w].astype(np.float64) + 1e-40  # window w starts at sample `start`
        # power-law fit on the channel-median spectrum
        logp = np.log10(np.median(psd, axis=0)[fit_band])
        slope, intercept = np.polyfit(logf, logp, 1)
        residual = logp - (slope * logf + intercept)
        r2 = 1 - residual.var() / max(logp.var(), 1e-30)
        # tone: strongest bin over the median of its ±3 Hz neighbourhood (no mains)
        tone = 0.0
        usable = np.flatnonzero((f >= 1) & (f <= 44) & _line_mask(f))
        half = max(2, int(round(3 / spectra.df)))
        for c in range(psd.shape[0]):
            p = psd[c]
            for k in usable[np.argsort(p[usable])[-3:]]:
                around = np.r_[p[max(0, k - half) : max(0, k - 1)], p[k + 2 : k + half + 1]]
                if around.size:
                    tone = max(tone, float(np.log10(p[k] / np.median(around))))
        norm = psd[:, (f >= 1) & (f <= 45)]
        norm = norm / norm.sum(axis=1, keepdims=True)
        entropy = float(np.mean(-(norm * np.log(norm)).sum(axis=1) / np.log(norm.shape[1])))
        robust = 1.4826 * np.median(np.abs(seg - np.median(seg, axis=1, keepdims=True)), axis=1)
        corr = np.atleast_2d(np.corrcoef(seg))
        absolute = np.abs(corr[pairs])
        absolute = absolute[np.isfinite(absolute)]
        env = envelope[:, start : start + window]
        env_cv = float(np.median(env.std(axis=1) / np.maximum(env.mean(axis=1), 1e-30)))
        increments = seg[:, 2:] - seg[:, :-2]
        asym = float(
            np.median(np.abs(np.mean(increments**3, axis=1)) / np.maximum(np.std(increments, axis=1) ** 3, 1e-60))
        )
        low = psd[:, (f >= 1) & (f < 8)].sum()
        high = psd[:, (f >= 13) & (f <= 45)].sum()
        rows.append(
            [
                -slope,
                r2,
                tone,
                entropy,
                float(np.log10(max(np.median(robust), 1e-30))),
                float(np.median(absolute)) if absolute.size else 0.0,
                float(np.std(absolute)) if absolute.size else 0.0,
                env_cv,
                asym,
                float(np.median(kurtosis(seg, axis=1))),
                float(flat_fraction_all[:, start : start + window - 1].mean()),
                float(np.log10(low / high)),
            ]
        )
    return LivenessFeatures(np.asarray(rows, dtype=np.float64), starts)
