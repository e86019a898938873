"""The hot path's rewrites of NumPy calls give the numbers of the calls they replace.

Each replaces a general routine whose bookkeeping dominated on a submission's small arrays
(``benchmarks/README.md``, "Where one submission's CPU goes"); these tests hold them to the
original, bit for bit where the rewrite claims it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindprint.labeling.verification.uniqueness import GRID_HZ, _interp_rows
from mindprint.signal.artifacts import _moving_mean
from mindprint.signal.features import APERIODIC_RANGE, aperiodic_exponent
from mindprint.signal.spectral import band_mask, window_spectra
from mindprint.signal.stats import median


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 6),
    n=st.integers(1, 140),
    seed=st.integers(0, 2**31),
    ties=st.booleans(),
)
def test_median_is_numpys_bit_for_bit(rows: int, n: int, seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n, 3)) * 1e-5
    if ties:
        x = np.round(x * 1e6) / 1e6  # quantised values: repeated middles
    for axis in (0, 1, 2):
        assert np.array_equal(median(x, axis=axis), np.median(x, axis=axis))


@pytest.mark.parametrize("sfreq", [125.0, 250.0, 256.0, 500.0, 600.615, 1000.0])
@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_interp_rows_is_numpys_interp_bit_for_bit(sfreq: float, fraction: float) -> None:
    rng = np.random.default_rng(int(sfreq))
    rows = rng.standard_normal((4, int(4 * sfreq) + 3)) * 1e-5
    source = np.arange(rows.shape[1]) / sfreq
    n_grid = int(np.floor((rows.shape[1] / sfreq - fraction / GRID_HZ) * GRID_HZ))
    times = (np.arange(n_grid) + fraction) / GRID_HZ
    expected = np.stack([np.interp(times, source, row) for row in rows])
    assert np.array_equal(_interp_rows(times, source, rows), expected)
    outside = np.array([-1.0, source[-1], source[-1] + 1.0])  # beyond the ends: the end values
    assert np.array_equal(_interp_rows(outside, source, rows), np.stack([np.interp(outside, source, r) for r in rows]))


@pytest.mark.parametrize("width", [1, 2, 61, 62, 63])
@pytest.mark.parametrize("n", [63, 500, 1001])
def test_moving_mean_is_a_same_mode_convolution(width: int, n: int) -> None:
    x = np.random.default_rng(n + width).random((3, n)) * 1e-10
    expected = np.stack([np.convolve(row, np.ones(width) / width, mode="same") for row in x])
    np.testing.assert_allclose(_moving_mean(x, width), expected, rtol=1e-9, atol=1e-24)
    assert (_moving_mean(np.zeros((1, n)), width) >= 0).all()


def _aperiodic_with_quantile(spectra, keep_fraction: float = 0.6, iterations: int = 2):  # type: ignore[no-untyped-def]
    """The fit as it was written with ``np.quantile`` (the reference)."""
    mask = band_mask(spectra.freqs, APERIODIC_RANGE, inclusive=True)
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
        residual = logp - (mean_p[..., None] + slope[..., None] * df)
        weights = (residual <= np.quantile(residual, keep_fraction, axis=-1, keepdims=True)).astype(np.float64)
    return -slope


@pytest.mark.parametrize("sfreq", [250.0, 500.0])
def test_aperiodic_exponent_keeps_what_the_quantile_kept(sfreq: float) -> None:
    rng = np.random.default_rng(3)
    brown = np.cumsum(rng.standard_normal((6, int(8 * sfreq))), axis=1) * 1e-6
    x = brown + 1e-6 * np.sin(2 * np.pi * 10 * np.arange(brown.shape[1]) / sfreq)
    spectra = window_spectra(x, sfreq, window_seconds=2.0, overlap=0.5, fmax=45.0)
    assert np.array_equal(aperiodic_exponent(spectra), _aperiodic_with_quantile(spectra))
