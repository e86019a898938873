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
from mindprint.signal.features import lowest_fraction
from mindprint.signal.stats import mad_std, median, median_mad_std


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
        centre = np.median(x, axis=axis, keepdims=True)
        assert np.array_equal(mad_std(x, axis=axis), 1.4826 * np.median(np.abs(x - centre), axis=axis))
        kept_centre, kept_spread = median_mad_std(x, axis=axis)  # what the artifact detectors read
        assert np.array_equal(kept_centre, centre)
        assert np.array_equal(kept_spread, 1.4826 * np.median(np.abs(x - centre), axis=axis, keepdims=True))


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


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 40)),
    keep=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**31),
    ties=st.booleans(),
)
def test_lowest_fraction_keeps_what_the_quantile_kept(
    shape: tuple[int, int], keep: float, seed: int, ties: bool
) -> None:
    residual = np.random.default_rng(seed).standard_normal(shape)
    if ties:
        residual = np.round(residual, 1)
    expected = (residual <= np.quantile(residual, keep, axis=-1, keepdims=True)).astype(np.float64)
    assert np.array_equal(lowest_fraction(residual, keep), expected)


_floats = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1e-9, 1e-9) | st.sampled_from([0.0, 1.0, 1.0001])


@settings(max_examples=300, deadline=None)
@given(a=_floats, b=_floats, nudge=st.floats(-2e-4, 2e-4))
def test_feature_comparison_is_numpys_isclose(a: float, b: float, nudge: float) -> None:
    """The edge's features are compared with the platform's recomputation by ``np.isclose``'s
    test written out for two scalars (``samples._close``): the same verdict on every pair."""
    from mindprint.labeling.samples import FEATURE_TOLERANCE, _close

    for x, y in ((a, b), (a, a * (1 + nudge)), (b + nudge, b)):
        problems: list[str] = []
        _close({"f": x}, {"f": y}, "features", problems)
        assert bool(problems) == (not np.isclose(x, y, rtol=FEATURE_TOLERANCE, atol=1e-15)), (x, y)
