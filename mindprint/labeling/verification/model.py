"""The liveness model: logistic regression on liveness features of whole 4 s epochs,
thresholds by cross-validation across recordings.

Training (:func:`train_liveness`) uses scikit-learn; the shipped model is plain JSON
(feature means and scales, coefficients, intercept, threshold, human ranges) scored
with NumPy, so verification is deterministic and needs no pickles.

The model learns from what the platform scores: isolated 4 s epochs cut from every
recording (in 2, 4, 8 and all channels), each epoch seen as 2 s windows every 0.5 s. An
epoch's score is its **weakest** window's, so no stretch of a sample goes unchecked.
Each feature is clipped to its human range widened by half its width before it counts:
no single feature far outside what a head produces can buy acceptance (the first model
gave a signal generator +8 logits for one out-of-range feature). And the range is part of
the decision: one more term, learned like the others, counts how far the window lies
outside the human range (the sum over features of the distance past the range, in range
widths, at most ``EXCESS_CAP``). Without it a window could be far outside on several
features a linear model weighs lightly — brown noise with an alpha sine (spectral
entropy, alpha-envelope variation, power variation all below any head's) passed 5 % of
the time once the correlation feature stopped rewarding its chance correlation.
The term is capped and the correlation feature can outweigh it: two channels of a signal
generator (a 1 Hz and a 50 Hz sine, nothing but filter residue between them, which covaries
perfectly) lay 4.3–5.4 range widths outside and scored 1.0. A rule on the summed range
(tried 2026-12-06 at 4 widths) does not separate them from real EEG: Cyton pairs through a
jaw clench lie 4.5–13 widths outside (EMG: amplitude, exponent, entropy all past the range)
and lost 2 % of its correlated pairs' epochs. What no head gives is narrower — see the
ceilings in :mod:`~mindprint.labeling.verification.liveness` (``LOW_HIGH_CEILING`` for that pair).

Cross-validation: each fold holds out one real recording together with every forgery
derived from it and the odd-numbered epochs of the recordings that are negative only;
the model never sees the held-out recording. The accept threshold is the lowest epoch
score that keeps the out-of-fold false-accept rate at or below ``max_fpr``; the real
acceptance that leaves, per recording and channel count, is kept in ``training`` and
measured by ``benchmarks/forgeries.py``.
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
from mindprint.labeling.verification.liveness import (
    COPIES_CEILING,
    EDGE_SECONDS,
    FEATURES,
    LOW_HIGH_CEILING,
    STUCK_CEILING,
    TONE_CEILING,
    LivenessFeatures,
    liveness_features,
)

logger = logging.getLogger(__name__)

MODEL_PATH = Path(__file__).parent / "liveness_model.json"
EPOCH_SECONDS = 4.0  # what a sample carries (tmin −1 s … tmax 3 s)
WINDOW_STEP = 0.5
WINDOW_SECONDS = 2.0  # each scored window's length (liveness_features' default)
STABILITY_BANDS = (3, 4, 8)  # channel counts from which a stability floor applies
FULL_PATTERN = STABILITY_BANDS[-1]  # from here the statistic averages ≥ 28 channel pairs
FEW_CHANNELS_FLOOR = 0.0
FULL_PATTERN_FLOOR = 0.2
EXCESS_CAP = 5.0  # the "outside the human range" term, in range widths summed over features

__all__ = [
    "EPOCH_SECONDS",
    "EXCESS_CAP",
    "LivenessModel",
    "LivenessScore",
    "WindowSet",
    "choose_threshold",
    "epoch_scores",
    "featurise",
    "load_default_model",
    "out_of_fold_scores",
    "presentations",
    "stability_floors",
    "train_liveness",
]


@dataclass(frozen=True, slots=True)
class LivenessScore:
    """Liveness of a stretch of EEG: the weakest window's probability, decision, reasons, and
    each window's ``correlation_z`` (how strongly the channels covary: what tells a 2-channel
    contributor whether the montage, not the head, is the problem)."""

    score: float
    accepted: bool
    window_scores: list[float]
    reasons: list[str]
    correlation_z: list[float] = field(default_factory=list)


@dataclass
class LivenessModel:
    mean: list[float]
    scale: list[float]
    coef: list[float]  # one per feature, then the weight of the "outside the human range" term
    intercept: float
    threshold: float
    human_low: list[float]
    human_high: list[float]
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    training: dict[str, object] = field(default_factory=dict)
    # lowest channel count of a band (as text: JSON keys) -> the lowest ``stability`` a window
    # of a head keeps in that band (see :func:`stability_floors`)
    stability_low: dict[str, float] = field(default_factory=dict)

    def stability_floor(self, n_channels: int) -> float | None:
        """The floor for ``n_channels``: that of the band it falls in (None below 3 channels)."""
        return _band_floor(self.stability_low, n_channels)

    def _params(self) -> _Params:
        return _Params(
            np.asarray(self.mean),
            np.asarray(self.scale),
            np.asarray(self.coef),
            self.intercept,
            np.asarray(self.human_low),
            np.asarray(self.human_high),
        )

    def assess(
        self, data: NDArray[np.floating], sfreq: float, *, band: NDArray[np.float64] | None = None
    ) -> LivenessScore:
        """Score EEG (n_channels, n_times) in volts, at least 2.5 s: 2 s windows every 0.5 s
        over the whole stretch, the weakest decides. ``band``: the data already band-passed
        (see :func:`~mindprint.labeling.verification.liveness.liveness_features`)."""
        features = liveness_features(data, sfreq, window_seconds=WINDOW_SECONDS, step_seconds=WINDOW_STEP, band=band)
        values = features.values
        params = self._params()
        probabilities = _score(params, values)
        weakest = int(np.argmin(probabilities))
        score = float(probabilities[weakest])
        rejections = []  # why it is rejected, before the features outside the human range
        if score < self.threshold:
            rejections.append(
                f"liveness {score:.2f}{_where(weakest, len(values))} below the threshold {self.threshold:.2f}"
            )
        floor = self.stability_floor(data.shape[0])  # None below 3 channels
        unstable = int(np.nanargmin(features.stability)) if floor is not None else 0
        alike = int(np.argmax(features.copies))
        if features.copies[alike] >= COPIES_CEILING:
            rejections.append(
                f"the channels carry one signal{_where(alike, len(values))}: the median channel pair "
                f"correlates at |r| {features.copies[alike]:.3f} in every band (real EEG < {COPIES_CEILING:g}): "
                "copies of one channel, or electrodes bridged"
            )
        elif floor is not None and features.stability[unstable] < floor:
            rejections.append(
                f"the channels' correlation pattern changes within a window{_where(unstable, len(values))} "
                f"(stability {features.stability[unstable]:.2f}, real EEG ≥ {floor:.2f}): spliced or forged piecewise"
            )
        rejections += _ceilings(features)
        accepted = not rejections
        reasons = list(rejections)
        row = values[weakest]
        for i in np.flatnonzero(_past(params, row[None, :])[0] > 0):  # what the range term counts
            low, high = self.human_low[i], self.human_high[i]
            reasons.append(f"{self.features[i]} {row[i]:.2f} outside the human range {low:.2f}–{high:.2f}")
        return LivenessScore(
            score,
            accepted,
            [float(p) for p in probabilities],
            reasons if not accepted else [],
            [float(z) for z in features.column("correlation_z")],
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> LivenessModel:
        try:
            fields = json.loads(Path(path).read_text())
            if isinstance(fields, dict):  # a model trained before the ``pattern`` rule was retired (2026-12-05)
                fields.pop("pattern_low", None)
            model = cls(**fields)
        except (OSError, ValueError, TypeError) as err:
            raise ConfigurationError(f"cannot load liveness model {path}: {err}") from err
        if model.features != list(FEATURES) or len(model.coef) != len(FEATURES) + 1:
            raise ConfigurationError(f"liveness model {path} was trained on other features: retrain it")
        return model


#: (feature, ceiling, why a window at or past it is no head's) — each message is formatted with the
#: window's value ``v`` and where it lies ``where``
CEILINGS: tuple[tuple[str, float, str], ...] = (
    (
        "tone",
        TONE_CEILING,
        "a pure tone{where}: a spectral line 10^{v:.1f} times its ±3 Hz neighbourhood "
        f"(real EEG < 10^{TONE_CEILING:g}): a signal generator, not a head",
    ),
    (
        "stuck",
        STUCK_CEILING,
        "{v:.0%} of the samples{where} sit in runs of identical values "
        f"(real EEG < {STUCK_CEILING:.0%}): a square wave or a stuck stream",
    ),
    (
        "low_high",
        LOW_HIGH_CEILING,
        "10^{v:.1f} times more power below 8 Hz than at 13–45 Hz{where} (real EEG < "
        f"10^{LOW_HIGH_CEILING:g}: an amplifier's own noise floor keeps it lower): no broadband activity at all",
    ),
)


def _ceilings(features: LivenessFeatures) -> list[str]:
    """The rules past a ceiling no head reaches (``CEILINGS``): why a window breaks them."""
    found = []
    n = len(features.values)
    for name, ceiling, message in CEILINGS:
        column = features.column(name)
        w = int(np.argmax(column))
        if column[w] >= ceiling:
            found.append(message.format(v=column[w], where=_where(w, n)))
    return found


def _band_floor(floors: dict[str, float], n_channels: int) -> float | None:
    counts = [int(k) for k in floors if int(k) <= n_channels]
    return floors[str(max(counts))] if counts else None


def _where(window: int, n_windows: int) -> str:
    """ " at 0.75–2.75 s": where a window lies in the stretch, in seconds from its first sample
    (windows start EDGE_SECONDS in; until 2026-12-04 the times were 0.25 s early); nothing if
    it is the only window."""
    start = EDGE_SECONDS + window * WINDOW_STEP
    return f" at {start:.2f}–{start + WINDOW_SECONDS:.2f} s" if n_windows > 1 else ""


def load_default_model() -> LivenessModel:
    """The model shipped with mindprint (trained by ``python -m mindprint.labeling.verification.train``)."""
    return LivenessModel.load(MODEL_PATH)


@dataclass(frozen=True, slots=True)
class WindowSet:
    """Features of every window of every epoch of the corpus, with labels, groups and classes."""

    values: NDArray[np.float64]
    labels: NDArray[np.int64]
    groups: NDArray[np.str_]
    kinds: NDArray[np.str_]
    index: NDArray[np.int64]  # epoch number within its recording
    epochs: NDArray[np.int64]  # epoch id, unique over the set
    names: NDArray[np.str_]  # recording name
    channels: NDArray[np.int64]  # channels presented
    stability: NDArray[np.float64]  # the rule beside the model (see liveness.py)

    def subset(self, keep: NDArray[np.bool_]) -> WindowSet:
        return WindowSet(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


def presentations(n_channels: int) -> list[int]:
    """Channel counts a recording is presented in: 2, 4, 8 (those below its own) and all."""
    return sorted({k for k in (2, 4, 8) if k < n_channels} | {n_channels})


def featurise(
    recordings: list[Recording],
    *,
    epoch_step: float = 2.0,
    seed: int = 0,
    all_presentations: bool = True,
    subsets: int = 1,
) -> WindowSet:
    """Cut every recording into 4 s epochs (``epoch_step`` apart), in every channel
    presentation (``subsets`` random subsets of 2 and 4 channels, one of 8, and all), and
    featurise each epoch alone: exactly what the platform scores. (Three subsets of 2 and
    4 channels instead of one lowered the out-of-fold real acceptance from 0.81 to 0.69:
    at 2 channels, channel-shuffled real EEG and a distant real pair look alike, and the
    extra shuffled pairs raise the threshold.)"""
    rng = np.random.default_rng(seed)
    columns: dict[str, list[object]] = {f: [] for f in WindowSet.__dataclass_fields__}
    rows: list[NDArray[np.float64]] = []
    epoch_id = 0
    for recording in recordings:
        width = int(round(EPOCH_SECONDS * recording.sfreq))
        stride = max(1, int(round(epoch_step * recording.sfreq)))
        n_ch = recording.data.shape[0]
        ways = [(k, i) for k in presentations(n_ch) for i in range(subsets if k < min(n_ch, 8) else 1)]
        for k, _ in ways if all_presentations else [(n_ch, 0)]:
            picks = np.arange(n_ch) if k == n_ch else np.sort(rng.choice(n_ch, k, replace=False))
            data = recording.data[picks]
            for number, start in enumerate(range(0, data.shape[1] - width + 1, stride)):
                try:
                    features = liveness_features(
                        data[:, start : start + width],
                        recording.sfreq,
                        window_seconds=WINDOW_SECONDS,
                        step_seconds=WINDOW_STEP,
                    )
                except SignalError as err:
                    logger.warning("skipping %s: %s", recording.name, err)
                    break
                n = len(features.values)
                rows.append(features.values)
                columns["stability"] += features.stability.tolist()
                for name, value in (
                    ("labels", recording.label),
                    ("groups", recording.group),
                    ("kinds", recording.kind),
                    ("index", number),
                    ("epochs", epoch_id),
                    ("names", recording.name),
                    ("channels", k),
                ):
                    columns[name] += [value] * n
                epoch_id += 1
    if not rows:
        raise SignalError("no recording gave a 4 s epoch")
    return WindowSet(
        values=np.vstack(rows),
        labels=np.asarray(columns["labels"], dtype=np.int64),
        groups=np.asarray(columns["groups"]),
        kinds=np.asarray(columns["kinds"]),
        index=np.asarray(columns["index"], dtype=np.int64),
        epochs=np.asarray(columns["epochs"], dtype=np.int64),
        names=np.asarray(columns["names"]),
        channels=np.asarray(columns["channels"], dtype=np.int64),
        stability=np.asarray(columns["stability"], dtype=np.float64),
    )


@dataclass(frozen=True, slots=True)
class _Params:
    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    coef: NDArray[np.float64]
    intercept: float
    low: NDArray[np.float64]
    high: NDArray[np.float64]


def _standardise(params: _Params, values: NDArray[np.float64]) -> NDArray[np.float64]:
    """The model's design matrix: each feature clipped to its widened human range and
    standardised, then how far the window lies outside the human range (see the module)."""
    width = params.high - params.low
    clipped = np.clip(values, params.low - width / 2, params.high + width / 2)
    z = (clipped - params.mean) / params.scale
    z = np.where(np.isfinite(z), z, 0.0)  # a feature that does not apply (a spread at 2 channels) counts 0
    past = _past(params, values)
    excess = np.minimum(np.sum(np.where(past > 0, past, 0.0), axis=1), EXCESS_CAP)  # NaN > 0 is False
    return np.column_stack([z, excess])


def _past(params: _Params, values: NDArray[np.float64]) -> NDArray[np.float64]:
    """How far each feature lies past its human range (> 0 outside; NaN where it does not
    apply), in range widths of at least one standard deviation of the training windows:
    ``stuck`` is 0 in every real window, and a trace of it must not count as infinitely far."""
    width = params.high - params.low
    return np.asarray(np.maximum(params.low - values, values - params.high) / np.maximum(width, params.scale))


def _fit(values: NDArray[np.float64], labels: NDArray[np.int64], c: float) -> _Params:
    from sklearn.linear_model import LogisticRegression

    human = values[labels == 1]
    low, high = np.nanpercentile(human, 0.5, axis=0), np.nanpercentile(human, 99.5, axis=0)
    mean = np.nanmean(values, axis=0)
    scale = np.nanstd(values, axis=0) + 1e-9
    partial = _Params(mean, scale, np.zeros(values.shape[1]), 0.0, low, high)
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(_standardise(partial, values), labels)
    return _Params(mean, scale, model.coef_[0], float(model.intercept_[0]), low, high)


def _score(params: _Params, values: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-(_standardise(params, values) @ params.coef + params.intercept)))


def epoch_scores(windows: WindowSet, scores: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """(each epoch's first window row — its labels, names, kinds —, the weakest window's score)."""
    _, first, inverse = np.unique(windows.epochs, return_index=True, return_inverse=True)
    weakest = np.full(len(first), np.inf)
    np.minimum.at(weakest, inverse, scores)
    return first, weakest


def out_of_fold_scores(windows: WindowSet, c: float = 0.3) -> NDArray[np.float64]:
    """Scores of every window from models that never saw its recording.

    Folds: (held-out real recording with its derived forgeries) × (parity of the
    epochs of negative-only recordings). A model trains on the other real recordings
    and one parity of the negative-only epochs, and scores the held-out recording and
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


def _real_acceptance(threshold: float, scores: NDArray[np.float64], names: NDArray[np.str_]) -> float:
    return float(np.mean([np.mean(scores[names == name] >= threshold) for name in np.unique(names)]))


def stability_floors() -> dict[str, float]:
    """Per band of channel counts (``STABILITY_BANDS``: 3, 4–7, 8 and more): the lowest window
    ``stability`` a head's correlation pattern keeps — ``FEW_CHANNELS_FLOOR`` (0: a piece whose
    correlations, on balance, run against the rest's) below ``FULL_PATTERN`` channels,
    ``FULL_PATTERN_FLOOR`` (0.2) from there, where the mean runs over ≥ 28 pairs and is steadier.

    Fixed, not learned (since 2026-12-06): the 1st percentile of the training epochs followed
    whichever recordings were in training — below 8 channels 0.004 with all five, 0.216
    without the Cyton recording, −0.046 without EEGLAB's; from 8, 0.22–0.28, which rejected
    14–22 % of a held-out Emotiv EPOC's 8-channel epochs (its 1–8 Hz, common to every channel,
    leaves some 0.5 s pieces' pattern near flat), 5 % at 0.2 (1 % with the pieces detrended;
    held out, 4 montages per epoch; 0.1: 1.6 %, but a Cyton epoch spliced with pink noise at
    2.25 s passed at 0.115). The rule is evidence against splices, not what stops them: a
    forged piece with its own chance pattern still passes it in ~1 % of epochs from 8 channels
    and 3–11 % below; the challenge's
    cues, which a recording spliced before the lease cannot answer, stop them (README, threat
    model)."""
    return {str(b): FEW_CHANNELS_FLOOR if b < FULL_PATTERN else FULL_PATTERN_FLOOR for b in STABILITY_BANDS}


def train_liveness(windows: WindowSet, *, c: float = 0.3, max_fpr: float = 0.01) -> LivenessModel:
    """Fit on every window; the epoch threshold from the out-of-fold epoch scores."""
    oof = out_of_fold_scores(windows, c)
    first, weakest = epoch_scores(windows, oof)
    labels, names, kinds, channels = (
        windows.labels[first],
        windows.names[first],
        windows.kinds[first],
        windows.channels[first],
    )
    threshold = choose_threshold(weakest, labels, max_fpr)
    params = _fit(windows.values, windows.labels, c)
    real = labels == 1
    return LivenessModel(
        mean=params.mean.tolist(),
        scale=params.scale.tolist(),
        coef=params.coef.tolist(),
        intercept=params.intercept,
        threshold=threshold,
        human_low=params.low.tolist(),
        human_high=params.high.tolist(),
        stability_low=stability_floors(),
        training={
            "epochs": int(len(first)),
            "windows": int(len(windows.labels)),
            "real_epochs": int(real.sum()),
            "groups": sorted(set(windows.groups.tolist())),
            "c": c,
            "max_fpr": max_fpr,
            "oof_real_acceptance": _real_acceptance(threshold, weakest[real], names[real]),
            "oof_real_acceptance_by_recording": {
                f"{name}/{k}ch": round(
                    float(np.mean(weakest[real & (names == name) & (channels == k)] >= threshold)), 4
                )
                for name in np.unique(names[real])
                for k in np.unique(channels[real & (names == name)])
            },
            "oof_false_accepts": {
                str(kind): round(float(np.mean(weakest[~real & (kinds == kind)] >= threshold)), 4)
                for kind in np.unique(kinds[~real])
            },
        },
    )
