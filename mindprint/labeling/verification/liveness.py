"""Liveness: does a window look like EEG from a human head?

Features (one row per window), each with a physiological reason to differ between a
head and a forgery:

``exponent``          1/f aperiodic exponent (human scalp EEG ≈ 1–3; white noise ≈ 0)
``fit_r2``            how well a power law explains the 2–40 Hz spectrum
``tone``              of each channel's three strongest bins, the highest over the median
                      of its ±3 Hz neighbourhood, mains excluded (pure tones: synthetic boards,
                      signal generators)
``entropy``           spectral entropy 1–45 Hz
``log_rms``           log10 of the robust amplitude in volts (a head gives µV)
``correlation_z``     median over channel pairs of how far the pair covaries beyond chance,
                      band by band: in each of 1–4, 4–8, 8–13, 13–30 and 30–45 Hz the
                      band's |r| × √N_eff, N_eff the band's effective number of independent
                      samples (Bartlett: 2 × T × the bandwidth both spectra share, from the
                      window's periodograms), then the root mean square over the bands.
                      Volume conduction and a shared reference make scalp channels covary
                      (≫ 1); independent, shuffled or per-channel forged channels give
                      chance (≈ 1) — however slow the signal
                      (raw |r| of brown noise over 2 s is ~0.7 by chance). Band by band,
                      because the broadband r is the strongest band's, and on a distant
                      pair that band is often each channel's own while the pair shares
                      another (Cyton's Fp1 or Fp2 against a posterior channel: blinks and
                      alpha apart, beta shared; broadband 0.6–1.5, like independent
                      channels, band by band 2–4)
``correlation_z_spread`` spread of the pairs' z (neighbours covary more than
                      distant pairs); not a number with fewer than 3 channels (one pair has
                      no spread) — the model then leaves it out instead of reading a 0
``envelope_cv``       coefficient of variation of the alpha-band amplitude envelope
                      (alpha comes in bursts; Gaussian noise gives a Rayleigh envelope)
``irreversibility_10``, ``irreversibility_20``
                      *signed* skewness of the 10 ms and 20 ms increments (median over
                      channels): a linear Gaussian process — a phase-randomised
                      surrogate, a VAR model — has none, and EEG played backwards has
                      it with the opposite sign (on the four real recordings carried until
                      2026-12-05 the median is positive: scalp EEG rises faster than it
                      falls). On one 4 s epoch the sign is noisy (real against reversed:
                      AUC 0.84 over the recordings), and negating the reversed signal
                      restores it, so it is evidence, not a rule
``kurtosis``          excess kurtosis of the band-passed signal
``envelope_kurtosis`` kurtosis of the 1–45 Hz amplitude envelope (bursts, transients)
``power_cv``          spread of the power over 0.5 s pieces of the window (EEG is not
                      stationary on that scale; a Gaussian surrogate of it is)
``stuck``             fraction of samples in runs of ≥ 5 identical values (a stuck or
                      synthetic stream; ADC quantisation alone rarely gives such runs)
``low_high``          log ratio of 1–8 Hz to 13–45 Hz power (spectral shape)

Beside the features, two statistics that are rules, not evidence (the model never sees them):

``stability``         how well every 0.5 s piece of the window reproduces the signed
                      pattern of channel correlations of the rest of the window (mean over
                      channel pairs of the piece's r, signed by the other pieces' mean r,
                      over that mean's mean |r|; each piece detrended; the lowest piece).
                      A head's geometry and reference fix that pattern for seconds; EEG
                      spliced with a forged piece (each channel's own spectrum, no shared
                      pattern) breaks it for the forged piece. Not a
                      number with fewer than 3 channels. The decision rejects a window
                      below the floor for its channel count (fixed: 0 through 3–7
                      channels, 0.2 from 8,
                      :func:`~mindprint.labeling.verification.model.stability_floors`).

``copies``            the median channel pair's |r| in its weakest band of ``correlation_z``'s
                      five: one channel copied onto every channel gives ≥ 0.999 whatever
                      the noise added below a µV; real EEG ≤ 0.96 in every recording and
                      presentation we carry (2 s windows every 0.5 s, random channels) — an
                      Emotiv EPOC's 14 channels share their 1–8 Hz almost whole (r 0.98)
                      but not their alpha and beta. The decision rejects a window at
                      ``COPIES_CEILING`` (a fixed 0.98, not learned: two electrodes bridged
                      by gel record one signal too). The weakest band, not the second
                      weakest (tried 2026-12-06): an Emotiv pair reaches 0.989 in its second
                      weakest. What it lets through: a copy of a channel too quiet in one band
                      for 0.1 µV of noise per copy to leave it whole there (Elekta's EEG 053,
                      4 µV: 0.946 in 30–45 Hz) — the challenge's to stop, as any copy with
                      more noise.

Three features the model reads are also rules past a ceiling no head reaches (the model alone
let them through: its channel-correlation term outweighs a capped range term, and two
deterministic signals covary perfectly in the bands where both carry only filter residue —
two channels of the signal generator, a sine and a square wave, passed 10–30 % of the time
through 2 channels, 2026-12-06):

``tone`` ≥ ``TONE_CEILING``   a spectral line 10^6 times the median of its ±3 Hz
                      neighbourhood (the generator's sines 10^9.8–10^14.7; real EEG at most
                      10^4.5 in every window of the five recordings, BrainFlow's synthetic
                      board 10^3.7–10^6.0, already rejected by the model)
``stuck`` ≥ ``STUCK_CEILING`` a quarter of the window's samples in runs of ≥ 5 identical values
                      (a square wave or a stuck stream; 0 in every real window; one railed
                      channel of 8 gives 0.125 and is left to the model)
``low_high`` ≥ ``LOW_HIGH_CEILING`` 10^5 times more power at 1–8 Hz than at 13–45 Hz: no
                      broadband activity at all (a 1 Hz and a 50 Hz sine, which the tone rule
                      misses — one at the band's edge, one at the mains: 10^7.5). Real EEG at
                      most 10^2.4 through any pair of the five recordings, the Emotiv file's 1 mV
                      movement artifact included; an amplifier's own noise floor keeps it low

(Until 2026-12-05 a rule ``pattern`` stood in ``copies``'s place: the lowest Pearson r, over
channel pairs, between a 0.5 s piece's pair correlations and the rest's, from 8 channels.
It stopped one channel copied onto all (a flat pattern) and no splice of
``benchmarks/forgeries.py`` that ``stability`` and the score did not; and it rejected 68–72 %
of an Emotiv EPOC's real epochs through 8 and 14 channels — their 1–8 Hz common to every
channel leaves the pattern flat too.)

A window is expected with at least 2 channels, in volts. Everything is computed for all
windows at once (one 4 s epoch: 2 s windows every 0.5 s, ~5 ms of one core for 8 channels at 250 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy import signal as sps

from mindprint.core.errors import SignalError
from mindprint.signal.filters import FilterDesign, design_filter, filter_offline
from mindprint.signal.spectral import window_spectra
from mindprint.signal.stats import mad_std, median

FEATURES = (
    "exponent",
    "fit_r2",
    "tone",
    "entropy",
    "log_rms",
    "correlation_z",
    "correlation_z_spread",
    "envelope_cv",
    "irreversibility_10",
    "irreversibility_20",
    "kurtosis",
    "envelope_kurtosis",
    "power_cv",
    "stuck",
    "low_high",
)

__all__ = [
    "BAND",
    "COPIES_CEILING",
    "FEATURES",
    "LOW_HIGH_CEILING",
    "STUCK_CEILING",
    "TONE_CEILING",
    "LivenessFeatures",
    "liveness_features",
    "reusable_band",
    "shares_band",
]

EDGE_SECONDS = 0.25  # filter edge effects: windows start and end this far inside the data
BAND = (1.0, 45.0)  # the band-pass most features read (the edge pipeline's default filter)
STUCK_RUN = 5
#: a window whose median channel pair correlates this strongly in every band carries one signal
COPIES_CEILING = 0.98
#: a spectral line this many decades above its neighbourhood is a generator's, not a head's (real ≤ 4.5)
TONE_CEILING = 6.0
#: this share of a window's samples in runs of identical values is a synthetic or stuck stream (real: 0)
STUCK_CEILING = 0.25
#: this many decades more power at 1–8 Hz than at 13–45 Hz is no broadband activity at all (real ≤ 2.4)
LOW_HIGH_CEILING = 5.0
#: the bands ``correlation_z`` asks of each channel pair (Hz)
PAIR_BANDS = ((1.0, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 45.0))


@dataclass(frozen=True, slots=True)
class LivenessFeatures:
    """Feature matrix (n_windows, n_features), window start samples and each window's
    ``stability`` and ``copies``."""

    values: NDArray[np.float64]
    starts: NDArray[np.int64]
    stability: NDArray[np.float64]
    copies: NDArray[np.float64]
    names: tuple[str, ...] = FEATURES

    def column(self, name: str) -> NDArray[np.float64]:
        return self.values[:, self.names.index(name)]


def _line_mask(freqs: NDArray[np.float64]) -> NDArray[np.bool_]:
    mask = np.ones_like(freqs, dtype=bool)
    for line in (50.0, 60.0):
        mask &= np.abs(freqs - line) > 1.5
    return mask


@lru_cache(maxsize=32)
def _neighbourhoods(n_freqs: int, df: float) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Usable bins (1–44 Hz, no mains) and, for each, its ±3 Hz neighbours (±1 bin left out)."""
    freqs = np.arange(n_freqs, dtype=np.float64) * df
    usable = np.flatnonzero((freqs >= 1) & (freqs <= 44) & _line_mask(freqs))
    half = max(2, int(round(3 / df)))
    offsets = np.r_[np.arange(-half, -1), np.arange(2, half + 1)]
    neighbours = np.clip(usable[:, None] + offsets[None, :], 0, n_freqs - 1)
    return usable, neighbours


@lru_cache(maxsize=32)
def _pair_bands(n_freqs: int, df: float) -> NDArray[np.float64]:
    """(n_freqs, len(PAIR_BANDS)): which rfft bins each band of ``correlation_z`` sums."""
    freqs = np.arange(n_freqs, dtype=np.float64) * df
    return np.column_stack([(freqs >= low) & (freqs < high) for low, high in PAIR_BANDS]).astype(np.float64)


def _skew(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    centred = x - x.mean(axis=axis, keepdims=True)
    square = centred * centred  # products, not ** (np.power on floats is ~10x slower)
    m2 = np.mean(square, axis=axis)
    return np.asarray(np.mean(square * centred, axis=axis) / np.maximum(m2, 1e-60) ** 1.5)


def _kurtosis(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    centred = x - x.mean(axis=axis, keepdims=True)
    square = centred * centred
    m2 = np.mean(square, axis=axis)
    return np.asarray(np.mean(square * square, axis=axis) / np.maximum(m2 * m2, 1e-120) - 3.0)


def _stuck(x: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Per sample: is it inside a run of ≥ STUCK_RUN identical consecutive values?"""
    same = np.abs(np.diff(x, axis=1)) < 1e-12  # (c, t-1): sample t+1 equals sample t
    if same.shape[1] < STUCK_RUN - 1:
        return np.zeros_like(x, dtype=bool)
    runs = sliding_window_view(same, STUCK_RUN - 1, axis=1).all(axis=2)  # run starting at t
    flags = np.zeros_like(x, dtype=bool)
    for k in range(STUCK_RUN):
        flags[:, k : k + runs.shape[1]] |= runs
    return flags


def shares_band(design: FilterDesign) -> bool:
    """Is ``design`` the filter liveness band-passes with (so its output can be reused)?"""
    return np.array_equal(design.sos, design_filter(design.sfreq, *BAND).sos)


def reusable_band(filtered: NDArray[np.float64] | None, design: FilterDesign | None) -> NDArray[np.float64] | None:
    """``filtered`` if it came through liveness's own band-pass (:func:`shares_band`), else None:
    what to pass as ``band`` to :func:`liveness_features`."""
    return filtered if filtered is not None and design is not None and shares_band(design) else None


def liveness_features(
    data: NDArray[np.floating],
    sfreq: float,
    *,
    window_seconds: float = 2.0,
    step_seconds: float = 2.0,
    band: NDArray[np.float64] | None = None,
) -> LivenessFeatures:
    """Features of the windows of a recording, ``step_seconds`` apart (the outer 0.25 s are left out).

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_times)
        EEG in volts (raw; DC offsets allowed).
    sfreq : float
        Sampling rate in hertz (≥ 90 Hz: the features use up to 45 Hz).
    band : ndarray, optional
        ``data`` already band-passed by ``filter_offline(data, design_filter(sfreq, *BAND))``
        (the platform's pipeline re-run has it, see :func:`shares_band`): not filtered again.
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
    n_ch = x.shape[0]
    stuck_all = _stuck(x)
    if band is None:
        band = filter_offline(x, design_filter(sfreq, *BAND))
    elif band.shape != x.shape:
        raise SignalError(f"band-passed data has shape {band.shape}, the data {x.shape}")
    alpha = filter_offline(x, design_filter(sfreq, 8.0, 13.0, order=3))
    alpha_env = np.abs(sps.hilbert(alpha, axis=1))
    broad_env = np.abs(sps.hilbert(band, axis=1))
    inner = band[:, edge : band.shape[1] - edge]
    spectra = window_spectra(inner, sfreq, window_seconds=window_seconds, overlap=1 - step / window, fmax=45.0)
    f = spectra.freqs
    starts = spectra.starts + edge
    n_win = len(starts)
    take = starts[:, None] + np.arange(window)[None, :]  # (w, window) sample indices

    def windows_of(signal: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.transpose(signal[:, take], (1, 0, 2))  # (w, c, window)

    seg = windows_of(band)
    psd = np.transpose(spectra.psd, (1, 0, 2)).astype(np.float64) + 1e-40  # (w, c, f)
    # power-law fit on the channel-median spectrum, every window in one least-squares solve
    fit_band = (f >= 2) & (f <= 40) & _line_mask(f)
    logf = np.log10(f[fit_band])
    logp = np.log10(median(psd, axis=1)[:, fit_band])  # (w, k)
    design = np.vstack([logf, np.ones_like(logf)]).T
    coef, *_ = np.linalg.lstsq(design, logp.T, rcond=None)  # (2, w)
    residual = logp - (design @ coef).T
    r2 = 1 - residual.var(axis=1) / np.maximum(logp.var(axis=1), 1e-30)
    # tone: the strongest usable bin over the median of its neighbourhood
    usable, neighbours = _neighbourhoods(len(f), round(spectra.df, 9))
    candidates = psd[:, :, usable]
    top = np.argpartition(candidates, -3, axis=2)[:, :, -3:]  # each channel's 3 strongest bins
    around = median(psd[:, :, neighbours], axis=3)  # (w, c, usable)
    ratio = np.take_along_axis(candidates / around, top, axis=2)
    tone = np.log10(ratio.max(axis=(1, 2)))
    norm = psd[:, :, (f >= 1) & (f <= 45)]
    norm = norm / norm.sum(axis=2, keepdims=True)
    entropy = np.mean(-(norm * np.log(norm)).sum(axis=2) / np.log(norm.shape[2]), axis=1)
    robust = mad_std(seg, axis=2)  # (w, c)
    log_rms = np.log10(np.maximum(median(robust, axis=1), 1e-30))
    centred = seg - seg.mean(axis=2, keepdims=True)
    pairs = np.triu_indices(n_ch, 1)
    # each pair's covariation beyond chance, band by band (PAIR_BANDS): in a band, |r| of the
    # band's part of both signals times √N_eff (Bartlett: 2 ΣPx ΣPy / Σ Px·Py over the band's
    # periodogram bins), which comes to |Σ Re(X·Y*)| √(2 / Σ Px·Py); the pair's z is the root
    # mean square over the bands. Untapered periodograms of the very samples (the Hann spectra
    # above smooth peaks and overstate the shared bandwidth).
    spectrum = np.fft.rfft(centred, axis=2)  # (w, c, f)
    periodogram = spectrum.real * spectrum.real + spectrum.imag * spectrum.imag
    first, second = spectrum[:, pairs[0]], spectrum[:, pairs[1]]
    masks = _pair_bands(spectrum.shape[2], round(spectra.df, 9))  # (f, bands): the bins of the same window
    cross = (first.real * second.real + first.imag * second.imag) @ masks  # (w, pairs, bands)
    shared = (periodogram[:, pairs[0]] * periodogram[:, pairs[1]]) @ masks
    covary = np.abs(cross)
    in_band = periodogram @ masks  # (w, c, bands): each channel's power in each band
    band_r = covary / np.sqrt(np.maximum(in_band[:, pairs[0]] * in_band[:, pairs[1]], 1e-300))
    copies = median(band_r.min(axis=2), axis=1)  # the median pair's weakest band
    z_bands = covary * np.sqrt(2 / np.maximum(shared, 1e-300))
    z_pairs = np.sqrt((z_bands * z_bands).mean(axis=2))  # (w, pairs)
    correlation_z = median(z_pairs, axis=1)
    spread = z_pairs.std(axis=1) if n_ch >= 3 else np.full(n_win, np.nan)
    env = windows_of(alpha_env)
    env_cv = median(env.std(axis=2) / np.maximum(env.mean(axis=2), 1e-30), axis=1)
    irreversibility = []
    for lag_seconds in (0.01, 0.02):
        lag = max(1, int(round(lag_seconds * sfreq)))
        increments = seg[:, :, lag:] - seg[:, :, :-lag]
        irreversibility.append(median(_skew(increments), axis=1))
    kurt = median(_kurtosis(seg), axis=1)
    env_kurt = median(_kurtosis(windows_of(broad_env)), axis=1)
    piece = max(1, int(round(0.5 * sfreq)))
    n_pieces = window // piece
    pieces = seg[:, :, : n_pieces * piece].reshape(n_win, n_ch, n_pieces, piece)
    power = (pieces**2).mean(axis=3)
    power_cv = median(power.std(axis=2) / np.maximum(power.mean(axis=2), 1e-60), axis=1)
    stuck = windows_of(stuck_all.astype(np.float64)).mean(axis=(1, 2))
    low = psd[:, :, (f >= 1) & (f < 8)].sum(axis=(1, 2))
    high = psd[:, :, (f >= 13) & (f <= 45)].sum(axis=(1, 2))
    values = np.column_stack(
        [
            -coef[0],
            r2,
            tone,
            entropy,
            log_rms,
            correlation_z,
            spread,
            env_cv,
            irreversibility[0],
            irreversibility[1],
            kurt,
            env_kurt,
            power_cv,
            stuck,
            np.log10(low / high),
        ]
    )
    return LivenessFeatures(values.astype(np.float64), starts, _stability(pieces, pairs), np.asarray(copies))


def _stability(pieces: NDArray[np.float64], pairs: tuple[NDArray[np.intp], NDArray[np.intp]]) -> NDArray[np.float64]:
    """Per window: the lowest agreement of a piece's channel correlations with those of the
    rest of the window (see ``stability`` above). ``pieces`` (w, c, p, n). The piece is left
    out of its reference: a forged piece inside the window it is compared with shares its own
    chance pattern with it (a splice's forged second passed at stability 0.3 against its
    window). The reference is the mean of the other pieces' correlation matrices, each piece
    weighted alike (until 2026-12-06 the correlation of their summed covariance, which one loud
    piece — a blink, a jaw clench, a movement — dictated: held out, real epochs through 4–7
    channels 0.966 → 0.974 at the same floor, splices no more often). Each piece is detrended
    first (since 2026-12-06 too): held out, from 8 channels real 0.988 → 0.995 at the 0.2
    floor (Emotiv 0.953 → 0.990), 4–7 channels 0.974 → 0.976 at 0, splices no more often."""
    if pieces.shape[1] < 3:
        return np.full(pieces.shape[0], np.nan)
    # each piece detrended: a drift slower than a 0.5 s piece can resolve would set its r alone
    ramp = np.arange(pieces.shape[3], dtype=np.float64) - (pieces.shape[3] - 1) / 2
    centred = pieces - pieces.mean(axis=3, keepdims=True)
    slope = (centred.reshape(-1, ramp.size) @ ramp).reshape(centred.shape[:3]) / (ramp @ ramp)  # one gemv
    centred -= slope[..., None] * ramp
    centred = np.transpose(centred, (0, 2, 1, 3))  # (w, p, c, n)
    cov = centred @ np.transpose(centred, (0, 1, 3, 2))  # (w, p, c, c), each piece's
    spread = np.sqrt(np.maximum(np.diagonal(cov, axis1=2, axis2=3), 1e-60))  # (w, p, c)
    i, j = pairs
    r = cov[:, :, i, j] / (spread[:, :, i] * spread[:, :, j])  # (w, p, pairs)
    reference = (r.sum(axis=1, keepdims=True) - r) / (r.shape[1] - 1)  # the other pieces' mean
    agreement = (r * np.sign(reference)).mean(axis=2) / np.maximum(np.abs(reference).mean(axis=2), 1e-9)
    return np.asarray(agreement.min(axis=1))
