from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mindprint.core.errors import SignalError
from mindprint.signal.pipeline import PipelineParams, StreamingPipeline, pipeline_version, process_recording

SFREQ = 250.0
NAMES = ["Fp1", "Fp2", "C3", "C4", "O1", "O2"]


def _eeg(seconds: float = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SFREQ)
    common = np.cumsum(rng.normal(size=n)) * 1e-6
    t = np.arange(n) / SFREQ
    return common + rng.normal(0, 5e-6, (len(NAMES), n)) + 10e-6 * np.sin(2 * np.pi * 10 * t) + 0.01


def test_version_is_stable_and_covers_every_parameter() -> None:
    params = PipelineParams()
    assert pipeline_version(params, SFREQ, 60.0) == pipeline_version(PipelineParams(), SFREQ, 60.0)
    others = {
        pipeline_version(replace(params, l_freq=0.5), SFREQ, 60.0),
        pipeline_version(replace(params, window_seconds=4.0), SFREQ, 60.0),
        pipeline_version(params, 256.0, 60.0),
        pipeline_version(params, SFREQ, 50.0),
    }
    assert len(others) == 4 and pipeline_version(params, SFREQ, 60.0) not in others


def test_offline_pipeline_reports_everything() -> None:
    result = process_recording(_eeg(), SFREQ, NAMES)
    summary = result.summary()
    assert summary["pipeline_version"] == result.version
    assert 9.5 < summary["alpha_peak"] < 10.5  # type: ignore[operator]
    assert set(summary["relative_power"]) == {"delta", "theta", "alpha", "beta", "gamma"}  # type: ignore[arg-type]
    assert result.quality_matrix().shape == (10, 6)
    assert result.filtered.shape == (6, int(20 * SFREQ))
    assert abs(result.filtered.mean()) < 1e-6  # the 10 mV offset is gone


def test_the_platform_recomputes_what_the_edge_reported() -> None:
    data = _eeg(seed=4)
    edge = process_recording(data, SFREQ, NAMES).summary()
    platform = process_recording(data.astype(np.float32).astype(np.float64), SFREQ, NAMES).summary()
    assert edge["pipeline_version"] == platform["pipeline_version"]
    for band, value in edge["relative_power"].items():  # type: ignore[union-attr]
        assert platform["relative_power"][band] == pytest.approx(value, rel=1e-4)  # type: ignore[index]


def test_streaming_pipeline_status() -> None:
    data = _eeg(6)
    stream = StreamingPipeline(SFREQ, NAMES, line_freq=None)
    assert stream.status() is None
    for start in range(0, data.shape[1], 10):  # 40 ms chunks
        stream.process(data[:, start : start + 10])
    status = stream.status()
    assert status is not None and status.samples_seen == data.shape[1]
    assert status.relative_power.shape == (6, 5)
    assert status.bands[int(np.argmax(status.relative_power.mean(axis=0)))] == "alpha"


def test_nan_and_short_input_are_refused() -> None:
    data = _eeg(4)
    data[0, 5] = np.nan
    with pytest.raises(SignalError, match="NaN"):
        process_recording(data, SFREQ, NAMES)
    with pytest.raises(SignalError, match="window"):
        process_recording(_eeg(1), SFREQ, NAMES)
    with pytest.raises(SignalError, match="shape"):
        process_recording(_eeg(4)[:3], SFREQ, NAMES)
