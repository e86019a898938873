"""Window spectra and features against scipy, fooof and known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal as sps

from mindprint.core.errors import SignalError
from mindprint.signal.features import compute_features, frontal_asymmetry
from mindprint.signal.spectral import BANDS, band_powers, window_spectra

SFREQ = 250.0


def _pink(rng: np.random.Generator, n_channels: int, n: int, exponent: float) -> np.ndarray:
    freqs = np.fft.rfftfreq(n, 1 / SFREQ)
    spectrum = rng.normal(size=(n_channels, freqs.size)) + 1j * rng.normal(size=(n_channels, freqs.size))
    spectrum[:, 1:] /= freqs[1:] ** (exponent / 2)
    spectrum[:, 0] = 0
    return np.fft.irfft(spectrum, n) * 1e-3


@pytest.mark.parametrize("duration", [60.0, 3.5])  # many windows (blocked DFT) and a few (one FFT each)
@pytest.mark.parametrize(("seconds", "overlap"), [(2.0, 0.5), (1.0, 0.0), (2.0, 0.75), (4.0, 0.5)])
def test_window_psd_equals_scipy_welch_per_window(seconds: float, overlap: float, duration: float) -> None:
    x = np.random.default_rng(1).normal(0, 10e-6, size=(3, int(max(duration, seconds) * SFREQ)))
    spectra = window_spectra(x, SFREQ, window_seconds=seconds, overlap=overlap, fmax=45.0)
    frames = sliding_window_view(x, spectra.window, axis=-1)[:, :: spectra.step]
    freqs, expected = sps.welch(frames, fs=SFREQ, nperseg=spectra.window, detrend=False)
    k = len(spectra.freqs)
    np.testing.assert_allclose(spectra.freqs, freqs[:k])
    np.testing.assert_allclose(spectra.psd, expected[..., :k], rtol=2e-3, atol=1e-16)


def test_ten_hertz_sine_peaks_at_ten_hertz() -> None:
    t = np.arange(int(10 * SFREQ)) / SFREQ
    x = (20e-6 * np.sin(2 * np.pi * 10 * t))[None, :]
    spectra = window_spectra(x, SFREQ)
    assert spectra.freqs[np.argmax(spectra.psd[0].mean(axis=0))] == 10.0
    powers = band_powers(spectra)[0].mean(axis=0)
    assert np.argmax(powers) == list(BANDS).index("alpha")
    # a sine of amplitude A has power A²/2
    assert powers.sum() == pytest.approx((20e-6) ** 2 / 2, rel=0.02)


def test_features_known_answers() -> None:
    rng = np.random.default_rng(3)
    n = int(60 * SFREQ)
    t = np.arange(n) / SFREQ
    background = _pink(rng, 4, n, exponent=1.6)
    alpha = 3 * background.std() * np.sin(2 * np.pi * 10.3 * t)
    x = background + alpha * np.array([[1.0], [2.0], [0.0], [0.0]])
    features = compute_features(window_spectra(x, SFREQ), ["F3", "F4", "Cz", "Pz"])
    assert np.nanmedian(features.alpha_peak[:2]) == pytest.approx(10.3, abs=0.15)
    # channels without alpha: the exponent of the 1/f background
    assert np.median(features.aperiodic_exponent[2:]) == pytest.approx(1.6, abs=0.15)
    # F4 has 4x the alpha power of F3: asymmetry ln(4) ≈ 1.39 (minus background share)
    assert np.median(features.frontal_asymmetry) == pytest.approx(np.log(4), abs=0.25)
    theta, alpha_p, beta = (features.band(b) for b in ("theta", "alpha", "beta"))
    np.testing.assert_allclose(features.engagement, beta / (alpha_p + theta))
    np.testing.assert_allclose(features.relative_power.sum(axis=-1), 1.0, atol=0.02)
    assert np.all((features.spectral_entropy > 0) & (features.spectral_entropy <= 1))
    # a pure tone has lower entropy than noise
    tone = compute_features(window_spectra(alpha[None, :] + 1e-9 * rng.normal(size=(1, n)), SFREQ), ["Cz"])
    assert tone.spectral_entropy.mean() < 0.3 < features.spectral_entropy[2:].mean()


def test_aperiodic_exponent_agrees_with_fooof() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import fooof
    rng = np.random.default_rng(5)
    n = int(30 * SFREQ)
    t = np.arange(n) / SFREQ
    x = np.vstack([_pink(rng, 1, n, e)[0] for e in (0.8, 1.2, 1.8, 2.4)])
    x = x + 2 * x.std(axis=1, keepdims=True) * np.sin(2 * np.pi * 10 * t)
    spectra = window_spectra(x, SFREQ, window_seconds=4.0)
    ours = compute_features(spectra, ["a", "b", "c", "d"]).aperiodic_exponent.mean(axis=1)
    reference = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for channel in range(4):
            model = fooof.FOOOF(aperiodic_mode="fixed", verbose=False)
            model.fit(spectra.freqs[1:], spectra.psd[channel].mean(axis=0)[1:].astype(float), [2, 40])
            reference.append(model.aperiodic_params_[1])
    np.testing.assert_allclose(ours, reference, atol=0.2)


def test_asymmetry_without_frontal_pair_is_nan() -> None:
    assert np.isnan(frontal_asymmetry(np.ones((2, 3)), ["O1", "O2"])).all()


def test_bad_parameters_are_named() -> None:
    x = np.zeros((2, 1000))
    with pytest.raises(SignalError, match="overlap"):
        window_spectra(x, SFREQ, overlap=1.0)
    with pytest.raises(SignalError, match="fmax"):
        window_spectra(x, SFREQ, fmax=200)
    with pytest.raises(SignalError, match="shape"):
        window_spectra(np.zeros(10), SFREQ)


def test_a_rate_whose_window_and_step_share_no_block() -> None:
    """600.615 Hz (an Elekta recording): 2 s windows of 1201 samples every 300 — the blocked
    transform's basis would need ~100 GiB; each window is transformed on its own instead."""
    x = np.random.default_rng(4).normal(size=(60, 2400))
    spectra = window_spectra(x, 600.615, window_seconds=2.0, overlap=0.75)
    assert spectra.window == 1201 and spectra.step == 300
    for w, start in enumerate(spectra.starts):
        _, expected = sps.welch(
            x[:, start : start + 1201], fs=600.615, window="hann", nperseg=1201, noverlap=0, detrend=False
        )
        np.testing.assert_allclose(spectra.psd[:, w], expected[:, : spectra.psd.shape[2]], rtol=1e-3)
