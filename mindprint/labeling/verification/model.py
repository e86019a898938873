"""The liveness model: logistic regression on liveness features, thresholds by
cross-validation across recordings.

Training (:func:`train_liveness`) uses scikit-learn; the shipped model is plain JSON
(feature means and scales, coefficients, intercept, threshold, human ranges) scored
with NumPy, so verification is deterministic and needs no pickles.

Cross-validation: each fold holds out one real recording together with every forgery
derived from it (its surrogates and shuffles) and the odd-numbered windows of the
recordings that are negative only; the model never sees the held-out recording. The
accept threshold is the lowest score that keeps the out-of-fold false-positive rate at
or below ``max_fpr`` over all negatives.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mindprint.core.errors import ConfigurationError, SignalError
from mindprint.labeling.verification.corpus import Recording
from mindprint.labeling.verification.liveness import FEATURES, liveness_features

logger = logging.getLogger(__name__)

MODEL_PATH = Path(__file__).parent / "liveness_model.json"

__all__ = ["LivenessModel", "LivenessScore", "WindowSet", "featurise", "load_default_model", "train_liveness"]


@dataclass(frozen=True, slots=True)
class LivenessScore:
    """Liveness of a stretch of EEG: median window probability, decision, reasons."""

    score: float
    accepted: bool
    window_scores: list[float]
    reasons: list[str]


@dataclass
class LivenessModel:
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    threshold: float
    human_low: list[float]
    human_high: list[float]
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    training: dict[str, object] = field(default_factory=dict)

    def probabilities(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        z = (values - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def assess(self, data: NDArray[np.floating], sfreq: float, *, whole: bool = False) -> LivenessScore:
        """Score EEG (n_channels, n_times) in volts; at least one 2 s window.

        By default consecutive 2 s windows and their median decide (a 4 s epoch has one
        window checked). ``whole`` scores 2 s windows every 0.5 s across the whole epoch
        and lets the weakest decide, so no stretch goes unchecked: ``benchmarks/forgeries.py``
        measures both — splices and per-channel forgeries are caught, but with the
        threshold chosen per window, real acceptance drops on 2-channel presentations, so
        it is not the default yet (the threshold must be chosen for the epoch decision).
        """
        step = 0.5 if whole else 2.0
        values = liveness_features(data, sfreq, step_seconds=step).values
        probabilities = self.probabilities(values)
        score = float(np.min(probabilities) if whole else np.median(probabilities))
        reasons = []
        median = np.median(values, axis=0)
        for i, name in enumerate(self.features):
            low, high = self.human_low[i], self.human_high[i]
            if not low <= median[i] <= high:
                reasons.append(f"{name} {median[i]:.2f} outside the human range {low:.2f}–{high:.2f}")
        accepted = score >= self.threshold
        if not accepted and not reasons:
            reasons.append(f"liveness {score:.2f} below the threshold {self.threshold:.2f}")
        return LivenessScore(score, accepted, [float(p) for p in probabilities], reasons)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> LivenessModel:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise ConfigurationError(f"cannot load liveness model {path}: {err}") from err


def load_default_model() -> LivenessModel:
    """The model shipped with mindprint (trained by ``python -m mindprint.labeling.verification.train``)."""
    return LivenessModel.load(MODEL_PATH)


@dataclass(frozen=True, slots=True)
class WindowSet:
    """Features of every window of the corpus with labels, groups and classes."""

    values: NDArray[np.float64]
    labels: NDArray[np.int64]
    groups: NDArray[np.str_]
    kinds: NDArray[np.str_]
    index: NDArray[np.int64]  # window number within its recording


def featurise(recordings: list[Recording]) -> WindowSet:
    values, labels, groups, kinds, index = [], [], [], [], []
    for recording in recordings:
        try:
            features = liveness_features(recording.data, recording.sfreq).values
        except SignalError as err:
            logger.warning("skipping %s: %s", recording.name, err)
            continue
        values.append(features)
        n = len(features)
        labels += [recording.label] * n
        groups += [recording.group] * n
        kinds += [recording.kind] * n
        index += list(range(n))
    return WindowSet(np.vstack(values), np.array(labels), np.array(groups), np.array(kinds), np.array(index))


def _fit(
    values: NDArray[np.float64], labels: NDArray[np.int64], c: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float]:
    from sklearn.linear_model import LogisticRegression

    mean = values.mean(axis=0)
    scale = values.std(axis=0) + 1e-9
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit((values - mean) / scale, labels)
    return mean, scale, model.coef_[0], float(model.intercept_[0])


def _score(
    params: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float], values: NDArray[np.float64]
) -> NDArray[np.float64]:
    mean, scale, coef, intercept = params
    return 1.0 / (1.0 + np.exp(-(((values - mean) / scale) @ coef + intercept)))


def out_of_fold_scores(windows: WindowSet, c: float = 0.3) -> NDArray[np.float64]:
    """Scores of every window from models that never saw its recording.

    Folds: (held-out real recording with its derived forgeries) × (parity of the
    windows of negative-only recordings). A model trains on the other real recordings
    and one parity of the negative-only windows, and scores the held-out recording and
    the other parity.
    """
    positive_groups = sorted(set(windows.groups[windows.labels == 1]))
    negative_only = ~np.isin(windows.groups, positive_groups)
    parity = windows.index % 2
    scores = np.zeros(len(windows.labels))
    counts = np.zeros(len(windows.labels))
    for held in positive_groups:
        for side in (0, 1):
            test = (windows.groups == held) | (negative_only & (parity == side))
            train = ~(windows.groups == held) & ~(negative_only & (parity == side))
            params = _fit(windows.values[train], windows.labels[train], c)
            scores[test] += _score(params, windows.values[test])
            counts[test] += 1
    return scores / np.maximum(counts, 1)


def choose_threshold(scores: NDArray[np.float64], labels: NDArray[np.int64], max_fpr: float = 0.01) -> float:
    negatives = np.sort(scores[labels == 0])
    if not negatives.size:
        return 0.5
    allowed = int(np.floor(max_fpr * negatives.size))
    cutoff = negatives[-(allowed + 1)]  # highest negative score that must be rejected
    return float(np.nextafter(cutoff, 1.0))


def train_liveness(windows: WindowSet, *, c: float = 0.3, max_fpr: float = 0.01) -> LivenessModel:
    """Fit on every window; threshold from the out-of-fold scores."""
    oof = out_of_fold_scores(windows, c)
    threshold = choose_threshold(oof, windows.labels, max_fpr)
    mean, scale, coef, intercept = _fit(windows.values, windows.labels, c)
    human = windows.values[windows.labels == 1]
    positives = oof[windows.labels == 1]
    return LivenessModel(
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=coef.tolist(),
        intercept=intercept,
        threshold=threshold,
        human_low=np.percentile(human, 0.5, axis=0).tolist(),
        human_high=np.percentile(human, 99.5, axis=0).tolist(),
        training={
            "windows": int(len(windows.labels)),
            "positives": int((windows.labels == 1).sum()),
            "groups": sorted(set(windows.groups.tolist())),
            "c": c,
            "max_fpr": max_fpr,
            "oof_tpr_at_threshold": float(np.mean(positives >= threshold)),
        },
    )
