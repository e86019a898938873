"""Filters: known answers against scipy, MNE and the filter design."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from scipy import signal as sps

from mindprint.core.errors import SignalError
from mindprint.signal.filters import (
    StreamingFilter,
    design_filter,
    detect_line_frequency,
    filter_offline,
    ringing_samples,
)

SFREQ = 250.0


def _noise(n_channels: int = 4, seconds: float = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 10e-6, size=(n_channels, int(seconds * SFREQ)))


def test_offline_equals_scipy_sosfiltfilt_with_the_same_padding() -> None:
    design = design_filter(SFREQ, 1.0, 45.0, notch=50.0)
    x = _noise() + 0.02  # a 20 mV offset, as raw OpenBCI
    pad = ringing_samples(design.sos)
    expected = sps.sosfiltfilt(design.sos, x, padlen=pad)
    np.testing.assert_allclose(filter_offline(x, design), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("chunk", [1, 7, 250, 1000])
def test_streaming_in_chunks_equals_one_pass(chunk: int) -> None:
    design = design_filter(SFREQ, 1.0, 45.0, notch=60.0)
    x = _noise(seconds=12) + np.array([[0.02], [-0.02], [0.001], [0.0]])
    whole = StreamingFilter(design, 4).process(x)
    streaming = StreamingFilter(design, 4)
    parts = [streaming.process(x[:, i : i + chunk]) for i in range(0, x.shape[1], chunk)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=0, atol=1e-10)
    # and the causal result is scipy's sosfilt seeded with sosfilt_zi x first sample
    zi = sps.sosfilt_zi(design.sos)[:, None, :] * x[:, 0][None, :, None]
    expected, _ = sps.sosfilt(design.sos, x, axis=1, zi=zi)
    np.testing.assert_allclose(whole, expected, rtol=0, atol=1e-12)


def test_streaming_state_seeding_stops_dc_ringing() -> None:
    design = design_filter(SFREQ, 1.0, 45.0)
    t = np.arange(int(5 * SFREQ)) / SFREQ
    sine = 20e-6 * np.sin(2 * np.pi * 10 * t)
    x = np.vstack([sine + 0.02, sine - 0.02])  # ±20,000 µV offsets
    seeded = StreamingFilter(design, 2).process(x)
    # without seeding the 20 mV step rings for seconds at millivolt scale
    unseeded, _ = sps.sosfilt(design.sos, x, axis=1, zi=np.zeros((design.sos.shape[0], 2, 2)))
    after = slice(int(0.5 * SFREQ), None)
    assert np.abs(unseeded[:, after]).max() > 1e-3
    assert np.abs(seeded[:, after]).max() < 2 * 20e-6  # only the 10 Hz signal (+ filter transient)


def _gain_db(y: np.ndarray, x: np.ndarray) -> float:
    middle = slice(len(x) // 4, 3 * len(x) // 4)
    return float(20 * np.log10(np.std(y[middle]) / np.std(x[middle])))


@pytest.mark.parametrize("freq", [0.2, 0.5, 4.0, 10.0, 30.0, 50.0, 70.0, 100.0])
def test_zero_phase_gain_matches_the_design(freq: float) -> None:
    design = design_filter(SFREQ, 1.0, 45.0, notch=50.0)
    t = np.arange(int(60 * SFREQ)) / SFREQ
    x = np.sin(2 * np.pi * freq * t)[None, :]
    y = filter_offline(x, design)[0]
    _, h = sps.sosfreqz(design.sos, worN=[freq], fs=SFREQ)
    expected_db = float(40 * np.log10(max(abs(h[0]), 1e-12)))  # forward-backward squares |H|
    measured_db = _gain_db(y, x[0])
    if expected_db > -100:
        assert measured_db == pytest.approx(expected_db, abs=0.1)
    else:
        assert measured_db < -90
    if 4 <= freq <= 20:
        assert abs(measured_db) < 0.05  # pass-band ripple
    if freq in (0.2, 70.0, 100.0):
        assert measured_db < -40  # stop band
    if freq == 50.0:
        assert measured_db < -60  # notch


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(n, 1 / SFREQ)
    spectrum = rng.normal(size=freqs.size) + 1j * rng.normal(size=freqs.size)
    spectrum[1:] /= freqs[1:] ** 0.8
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def test_edges_are_at_least_as_clean_as_mne() -> None:
    # Truth: the middle 20 s of a 60 s 1/f recording filtered whole. Each method sees
    # only those 20 s; we compare the RMS error in the first and last second.
    design = design_filter(SFREQ, 1.0, 45.0)
    rng = np.random.default_rng(7)
    middle = slice(int(20 * SFREQ), int(40 * SFREQ))
    edges = np.r_[0 : int(SFREQ), int(19 * SFREQ) : int(20 * SFREQ)]
    errors: dict[str, list[float]] = {"ours": [], "mne_iir": [], "mne_fir": []}
    iir = {"order": 4, "ftype": "butter", "output": "sos"}
    for _ in range(10):
        recording = _pink(rng, int(60 * SFREQ))[None, :] * 1e-3 + 0.01
        truth = filter_offline(recording, design)[:, middle]
        short = recording[:, middle]
        outputs = {
            "ours": filter_offline(short, design),
            "mne_iir": mne.filter.filter_data(short, SFREQ, 1.0, 45.0, method="iir", iir_params=iir, verbose="error"),
            "mne_fir": mne.filter.filter_data(short, SFREQ, 1.0, 45.0, verbose="error"),
        }
        for name, output in outputs.items():
            errors[name].append(float(np.sqrt(np.mean((output[0, edges] - truth[0, edges]) ** 2))))
    mean = {name: float(np.mean(values)) for name, values in errors.items()}
    assert mean["ours"] <= mean["mne_iir"]
    assert mean["ours"] <= mean["mne_fir"]


@pytest.mark.parametrize("line", [50.0, 60.0])
def test_line_frequency_is_detected(line: float) -> None:
    t = np.arange(int(10 * SFREQ)) / SFREQ
    x = _noise(seconds=10) + 30e-6 * np.sin(2 * np.pi * line * t)
    assert detect_line_frequency(x, SFREQ) == line


def test_no_line_frequency_in_clean_data() -> None:
    assert detect_line_frequency(_noise(seconds=10), SFREQ) is None


@pytest.mark.parametrize(("seconds", "sfreq"), [(4.0, 250.0), (10.0, 250.0), (4.94, 500.0), (3.1, 256.0)])
def test_line_detection_spectrum_is_welchs_up_to_a_constant(seconds: float, sfreq: float) -> None:
    """The line detector's spectrum (no scipy call per submission) has scipy's Welch bins and,
    away from DC and Nyquist, Welch's values times one constant: the same ratios, the same decision."""
    from scipy import signal as sps

    from mindprint.signal.filters import _welch_shape

    x = np.random.default_rng(7).standard_normal((6, int(seconds * sfreq)))
    nperseg = int(min(x.shape[1], round(4 * sfreq)))
    freqs, psd = sps.welch(x, fs=sfreq, nperseg=nperseg)
    ours_freqs, ours = _welch_shape(x, sfreq, nperseg)
    assert np.allclose(freqs, ours_freqs)
    ratio = psd[:, 1:-1] / ours[:, 1:-1]
    assert np.allclose(ratio, ratio[0, 0], rtol=1e-9)


def test_bad_input_is_refused_with_the_parameter_named() -> None:
    design = design_filter(SFREQ, 1.0, 45.0)
    bad = _noise()
    bad[1, 100] = np.nan
    with pytest.raises(SignalError, match="NaN"):
        filter_offline(bad, design)
    with pytest.raises(SignalError, match="shape"):
        filter_offline(np.zeros(100), design)
    with pytest.raises(SignalError, match="h_freq"):
        design_filter(SFREQ, 1.0, 200.0)
    with pytest.raises(SignalError, match="l_freq"):
        design_filter(SFREQ, 40.0, 30.0)
    with pytest.raises(SignalError, match="channels"):
        StreamingFilter(design, 3).process(_noise(4, 1))
