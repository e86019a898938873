"""The edge pipeline, offline and streaming, with a version the platform can re-run.

:func:`pipeline_version` hashes the signal code (every source file of this package) and
every parameter, so a sample's features can be recomputed on the platform with exactly
the pipeline that produced them, and a different pipeline is never mistaken for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mindprint import __version__
from mindprint.core.errors import SignalError
from mindprint.signal.artifacts import Annotation, ArtifactSettings, detect_artifacts
from mindprint.signal.features import WindowFeatures, compute_features
from mindprint.signal.filters import FilterDesign, StreamingFilter, design_filter, detect_line_frequency, filter_offline
from mindprint.signal.quality import ChannelQuality, QualityThresholds, assess_window, assess_windows
from mindprint.signal.spectral import WindowSpectra, window_spectra

logger = logging.getLogger(__name__)

__all__ = [
    "PipelineParams",
    "PipelineResult",
    "StreamingPipeline",
    "code_version",
    "pipeline_version",
    "process_recording",
]


@dataclass(frozen=True, slots=True)
class PipelineParams:
    """Every parameter of the edge pipeline (frequencies in Hz, durations in seconds).

    ``notch`` is ``"auto"`` (detect 50/60 Hz from the data), a frequency, or ``None``.
    """

    l_freq: float | None = 1.0
    h_freq: float | None = 45.0
    order: int = 4
    notch: str | float | None = "auto"
    notch_q: float = 30.0
    window_seconds: float = 2.0
    overlap: float = 0.5
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    artifacts: ArtifactSettings = field(default_factory=ArtifactSettings)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@lru_cache(maxsize=1)
def code_version() -> str:
    """mindprint's version plus a hash of this package's source files."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def pipeline_version(params: PipelineParams, sfreq: float, line_freq: float | None = None) -> str:
    """Stable hash of the code version, all parameters, sampling rate and resolved notch."""
    if params == _DEFAULT_PARAMS:  # every sample of the default pipeline: hashed once per rate
        return _default_version(float(sfreq), line_freq)
    return _version(params, sfreq, line_freq)


@lru_cache(maxsize=64)
def _default_version(sfreq: float, line_freq: float | None) -> str:
    return _version(_DEFAULT_PARAMS, sfreq, line_freq)


def _version(params: PipelineParams, sfreq: float, line_freq: float | None) -> str:
    payload = {"code": code_version(), "params": params.to_dict(), "sfreq": float(sfreq), "line_freq": line_freq}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "mp-signal-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


_DEFAULT_PARAMS = PipelineParams()


def _resolve_notch(params: PipelineParams, data: NDArray[np.float64], sfreq: float) -> float | None:
    if params.notch == "auto":
        return detect_line_frequency(data, sfreq)
    if params.notch is None:
        return None
    return float(params.notch)


def design_for(params: PipelineParams, sfreq: float, line_freq: float | None) -> FilterDesign:
    """The pipeline's filter at ``sfreq`` (the notch only if it lies below Nyquist)."""
    h_freq = params.h_freq if params.h_freq is None or params.h_freq < sfreq / 2 else None
    notch = line_freq if line_freq is not None and line_freq < sfreq / 2 - 1 else None
    return design_filter(sfreq, params.l_freq, h_freq, notch=notch, order=params.order, notch_q=params.notch_q)


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """Everything the edge reports for a recording or an epoch."""

    version: str
    sfreq: float
    line_freq: float | None
    filtered: NDArray[np.float64]
    spectra: WindowSpectra
    features: WindowFeatures
    quality: list[ChannelQuality]
    annotations: list[Annotation]
    design: FilterDesign | None = None  # the filter behind ``filtered``

    def quality_matrix(self) -> NDArray[np.float64]:
        """Quality index per window (rows) and channel (columns)."""
        return np.array([q.index for q in self.quality]) if self.quality else np.empty((0, self.filtered.shape[0]))

    def summary(self) -> dict[str, object]:
        """Scalar summary (means over windows), JSON-friendly: what a sample carries."""
        f = self.features
        quality = self.quality_matrix()
        return {
            "pipeline_version": self.version,
            "line_freq": self.line_freq,
            "band_power": {b: float(np.mean(f.band(b))) for b in f.bands},
            "relative_power": {b: float(np.mean(f.band(b, relative=True))) for b in f.bands},
            "spectral_entropy": float(np.mean(f.spectral_entropy)),
            "alpha_peak": float(np.nanmean(f.alpha_peak)) if np.isfinite(f.alpha_peak).any() else None,
            "aperiodic_exponent": float(np.mean(f.aperiodic_exponent)),
            "engagement": float(np.mean(f.engagement)),
            "frontal_asymmetry": float(np.nanmean(f.frontal_asymmetry))
            if np.isfinite(f.frontal_asymmetry).any()
            else None,
            "quality": float(quality.min(axis=1).mean()) if quality.size else None,
            "artifacts": {
                k: sum(a.kind == k for a in self.annotations) for k in sorted({a.kind for a in self.annotations})
            },
        }


def process_recording(
    data: NDArray[np.floating],
    sfreq: float,
    channel_names: Sequence[str],
    *,
    accel: NDArray[np.floating] | None = None,
    params: PipelineParams | None = None,
) -> PipelineResult:
    """Run the whole offline pipeline on one recording (or one epoch).

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_times)
        Raw EEG in volts (DC offsets allowed; NaN is an error).
    sfreq : float
        Sampling rate in hertz.
    channel_names : sequence of str
        10-20 labels.
    accel : ndarray, shape (n_axes, n_times), optional
        Accelerometer in g.
    """
    params = params or PipelineParams()
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(channel_names):
        raise SignalError(f"data must have shape ({len(channel_names)}, n_times), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise SignalError("data holds NaN or infinite values")
    window = int(round(params.window_seconds * sfreq))
    if x.shape[1] < window:
        raise SignalError(f"need at least one {params.window_seconds:g} s window ({window} samples), got {x.shape[1]}")
    line = _resolve_notch(params, x, sfreq)
    design = design_for(params, sfreq, line)
    filtered = filter_offline(x, design)
    spectra = window_spectra(
        filtered, sfreq, window_seconds=params.window_seconds, overlap=params.overlap, fmax=min(45.0, sfreq / 2)
    )
    features = compute_features(spectra, list(channel_names))
    quality = assess_windows(
        x, filtered, sfreq, window_seconds=params.window_seconds, line_freq=line, thresholds=params.quality
    )
    annotations = (
        detect_artifacts(x, sfreq, list(channel_names), accel=accel, line_freq=line, settings=params.artifacts)
        if x.shape[1] >= 2 * sfreq
        else []
    )
    return PipelineResult(
        version=pipeline_version(params, sfreq, line),
        sfreq=float(sfreq),
        line_freq=line,
        filtered=filtered,
        spectra=spectra,
        features=features,
        quality=quality,
        annotations=annotations,
        design=design,
    )


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """Latest window of a stream: quality and relative band powers per channel."""

    quality: ChannelQuality
    relative_power: NDArray[np.float64]  # (n_channels, n_bands)
    bands: tuple[str, ...]
    samples_seen: int


class StreamingPipeline:
    """Chunk-by-chunk pipeline: causal filter with state, features on the latest window.

    Parameters
    ----------
    sfreq : float
        Sampling rate in hertz.
    channel_names : sequence of str
        EEG channel names.
    line_freq : float | None
        Mains frequency (streaming cannot wait to detect it; see
        :func:`~mindprint.signal.filters.detect_line_frequency` on a first second or two).
    """

    def __init__(
        self,
        sfreq: float,
        channel_names: Sequence[str],
        *,
        line_freq: float | None,
        params: PipelineParams | None = None,
    ) -> None:
        self.params = params or PipelineParams()
        self.sfreq = float(sfreq)
        self.channel_names = list(channel_names)
        self.line_freq = line_freq
        self.design = design_for(self.params, sfreq, line_freq)
        self.filter = StreamingFilter(self.design, len(self.channel_names))
        self.window = int(round(self.params.window_seconds * sfreq))
        self._raw = np.zeros((len(self.channel_names), 0))
        self._filtered = np.zeros((len(self.channel_names), 0))
        self.samples_seen = 0
        self.version = pipeline_version(self.params, sfreq, line_freq)

    def process(self, chunk: NDArray[np.floating]) -> NDArray[np.float64]:
        """Filter a chunk (n_channels, n_times) and keep the latest window; returns the filtered chunk."""
        filtered = self.filter.process(chunk)
        self._raw = np.concatenate([self._raw, np.asarray(chunk, dtype=np.float64)], axis=1)[:, -self.window :]
        self._filtered = np.concatenate([self._filtered, filtered], axis=1)[:, -self.window :]
        self.samples_seen += filtered.shape[1]
        return filtered

    def status(self) -> LiveStatus | None:
        """Quality and band powers of the latest full window (None until one is full)."""
        if self._filtered.shape[1] < self.window:
            return None
        spectra = window_spectra(
            self._filtered,
            self.sfreq,
            window_seconds=self.params.window_seconds,
            overlap=0.0,
            fmax=min(45.0, self.sfreq / 2),
        )
        features = compute_features(spectra, self.channel_names)
        quality = assess_window(
            self._raw, self._filtered, self.sfreq, line_freq=self.line_freq, thresholds=self.params.quality
        )
        return LiveStatus(quality, features.relative_power[:, -1], features.bands, self.samples_seen)
