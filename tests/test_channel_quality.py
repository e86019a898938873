"""Channel quality criteria, each on a window built to fail exactly one."""

from __future__ import annotations

import numpy as np
import pytest

from mindprint.core.errors import SignalError
from mindprint.signal.filters import design_filter, filter_offline
from mindprint.signal.quality import QualityThresholds, assess_window

SFREQ = 250.0


def _window(seed: int = 0) -> np.ndarray:
    """6 channels sharing a common source (as EEG channels do) plus own noise."""
    rng = np.random.default_rng(seed)
    common = np.cumsum(rng.normal(size=int(2 * SFREQ)))
    common = filter_offline(common[None, :], design_filter(SFREQ, 1.0, 30.0))[0]
    common *= 15e-6 / common.std()
    return common + rng.normal(0, 4e-6, size=(6, common.size))


def _assess(raw: np.ndarray, **kwargs: object):  # type: ignore[no-untyped-def]
    filtered = filter_offline(np.nan_to_num(raw), design_filter(SFREQ, 1.0, 45.0))
    return assess_window(raw, filtered, SFREQ, **kwargs)  # type: ignore[arg-type]


def test_clean_window_is_good() -> None:
    quality = _assess(_window())
    assert quality.index.tolist() == [1.0] * 6
    assert quality.reasons == ((),) * 6


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda w: w.__setitem__((2, slice(100, 110)), np.nan), "non-finite"),
        (lambda w: w.__setitem__(2, 1e-9 * np.ones(w.shape[1])), "flat"),
        (lambda w: w.__setitem__(2, np.random.default_rng(9).normal(0, 15e-6, w.shape[1])), "poor correlation"),
        (
            lambda w: w.__setitem__(2, w[2] + np.random.default_rng(9).normal(0, 200e-6, w.shape[1])),
            "high-frequency noise",
        ),
        (lambda w: w.__setitem__(2, w[2] * 20), "high amplitude"),
        (
            lambda w: w.__setitem__(2, w[2] + 100e-6 * np.sin(2 * np.pi * 50 * np.arange(w.shape[1]) / SFREQ)),
            "line noise",
        ),
    ],
)
def test_each_criterion_flags_the_damaged_channel(damage, reason: str) -> None:  # type: ignore[no-untyped-def]
    window = _window()
    damage(window)
    quality = _assess(window, line_freq=50.0)
    assert reason in quality.reasons[2]
    assert quality.index[2] < 1.0
    assert all(reason not in r for i, r in enumerate(quality.reasons) if i != 2)


def test_railed_channel_is_bad() -> None:
    window = _window()
    window[4] = 0.1875  # Cyton full scale: ±187.5 mV
    quality = _assess(window, thresholds=QualityThresholds(full_scale_volts=0.1875))
    assert "railed" in quality.reasons[4] and quality.index[4] == 0.0


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(SignalError, match="shape"):
        assess_window(np.zeros((2, 100)), np.zeros((3, 100)), SFREQ)
