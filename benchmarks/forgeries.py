"""An adversary suite for liveness: cheap forgeries, scored as the platform scores a 4 s sample.

    .venv/bin/python benchmarks/forgeries.py [--shared tests/data/eeg] [--epochs-per-class 40]

Leave-one-recording-out over every real recording available (``--shared``: the Cyton, the
EEGLAB cap, the 3-channel BioSemi): for each held-out recording a liveness model is trained
exactly as the shipped one (``train_liveness``: the real recordings, their surrogates and
shuffles, the signal generator, pink/brown noise, BrainFlow's synthetic board) **without**
the held-out recording or anything derived from it; then 4 s epochs of the held-out
recording and of forgeries derived from it are scored with ``LivenessModel.assess`` — what
``submissions.submit`` calls on a sample's epoch — and counted accepted or not at that
model's threshold.

Forgery classes (each built from the held-out recording, all channels):

- ``surrogate_same_phase`` — phase-randomised with the *same* random phases on every
  channel (keeps every channel's spectrum and the cross-spectra)
- ``surrogate_per_channel`` — independent phases per channel (the class already trained on)
- ``var_gaussian`` / ``var_bootstrap`` — a VAR(8) fitted by least squares, simulated with
  Gaussian innovations or with its own residuals resampled (non-Gaussian innovations)
- ``reversed`` — the real epoch played backwards
- ``mixture`` — a random linear mixture of the recording's channels (a forger's cheap "new" EEG)
- ``am_noise`` — Gaussian noise shaped to the recording's spectrum, amplitude-modulated by
  a slow random envelope
- ``splice_real_then_forged`` / ``splice_forged_then_real`` — real EEG for a random 1–3 s,
  then a per-channel surrogate (or the other way round)
- ``synthetic_board``, ``generator`` — BrainFlow's synthetic board and the signal generator

Real acceptance is reported per recording and per channel presentation (2, 4, 8 and all
channels, where the recording has them). Replays are the uniqueness layer's job
(``benchmarks/verification.py``), not measured here. There is no challenge–response
liveness yet, so the last line reports ``challenge_auc=nan``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this folder would shadow the standard library's `signal` (benchmarks/signal.py)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

from mindprint.labeling.verification.corpus import Recording, build_recordings, phase_surrogate
from mindprint.labeling.verification.model import LivenessModel, featurise, train_liveness

EPOCH_SECONDS = 4.0
Forger = Callable[[NDArray[np.float64], float, np.random.Generator], NDArray[np.float64]]


def same_phase_surrogate(x: NDArray[np.float64], sfreq: float, rng: np.random.Generator) -> NDArray[np.float64]:
    spectrum = np.fft.rfft(x, axis=1)
    phases = np.exp(1j * rng.uniform(0, 2 * np.pi, spectrum.shape[1]))
    phases[0] = 1.0
    if x.shape[1] % 2 == 0:
        phases[-1] = 1.0
    return np.fft.irfft(spectrum * phases[None, :], x.shape[1], axis=1)


def per_channel_surrogate(x: NDArray[np.float64], sfreq: float, rng: np.random.Generator) -> NDArray[np.float64]:
    return phase_surrogate(x, rng)


@dataclass
class Var:
    """A VAR(p) fitted by least squares on a whole recording (channels demeaned)."""

    coef: NDArray[np.float64]  # (p, n, n)
    residuals: NDArray[np.float64]  # (n, t)
    mean: NDArray[np.float64]

    @classmethod
    def fit(cls, x: NDArray[np.float64], p: int = 8) -> Var:
        mean = x.mean(axis=1, keepdims=True)
        y = (x - mean).T  # (t, n)
        lagged = np.hstack([y[p - k - 1 : len(y) - k - 1] for k in range(p)])  # (t-p, n*p)
        target = y[p:]
        beta, *_ = np.linalg.lstsq(lagged, target, rcond=None)  # (n*p, n)
        n = x.shape[0]
        coef = beta.reshape(p, n, n).transpose(0, 2, 1)
        return cls(coef, (target - lagged @ beta).T, mean)

    def simulate(self, n_times: int, rng: np.random.Generator, *, bootstrap: bool) -> NDArray[np.float64]:
        p, n, _ = self.coef.shape
        burn = 500
        if bootstrap:
            picks = rng.integers(0, self.residuals.shape[1], n_times + burn)
            noise = self.residuals[:, picks]
        else:
            cov = np.cov(self.residuals)
            noise = np.linalg.cholesky(cov + 1e-30 * np.eye(n)) @ rng.normal(size=(n, n_times + burn))
        out = np.zeros((n, n_times + burn))
        for t in range(p, n_times + burn):
            out[:, t] = sum(self.coef[k] @ out[:, t - k - 1] for k in range(p)) + noise[:, t]
        return out[:, burn:] + self.mean


def mixture(x: NDArray[np.float64], sfreq: float, rng: np.random.Generator) -> NDArray[np.float64]:
    mixing = rng.normal(size=(x.shape[0], x.shape[0]))
    mixing /= np.linalg.norm(mixing, axis=1, keepdims=True)
    return mixing @ (x - x.mean(axis=1, keepdims=True))


def am_noise(x: NDArray[np.float64], sfreq: float, rng: np.random.Generator) -> NDArray[np.float64]:
    spectrum = np.abs(np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1))
    noise = np.fft.irfft(
        spectrum * np.fft.rfft(rng.normal(size=x.shape), axis=1) / np.sqrt(x.shape[1]), x.shape[1], axis=1
    )
    t = np.arange(x.shape[1]) / sfreq
    envelope = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    return noise * envelope


def splice(first_real: bool) -> Forger:
    def forge(x: NDArray[np.float64], sfreq: float, rng: np.random.Generator) -> NDArray[np.float64]:
        cut = int(rng.uniform(1.0, 3.0) * sfreq)
        fake = phase_surrogate(x, rng)
        return np.hstack([x[:, :cut], fake[:, cut:]]) if first_real else np.hstack([fake[:, :cut], x[:, cut:]])

    return forge


def epochs_of(x: NDArray[np.float64], sfreq: float, limit: int, rng: np.random.Generator) -> list[NDArray[np.float64]]:
    width = int(EPOCH_SECONDS * sfreq)
    starts = list(range(0, x.shape[1] - width + 1, width))
    if len(starts) > limit:
        starts = sorted(rng.choice(starts, limit, replace=False).tolist())
    return [x[:, s : s + width] for s in starts]


def presentations(n_channels: int) -> list[int]:
    return sorted({k for k in (2, 4, 8) if k < n_channels} | {n_channels})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data" / "eeg")
    parser.add_argument("--epochs-per-class", type=int, default=40)
    parser.add_argument("--synthetic-seconds", type=float, default=30.0)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    corpus = build_recordings(args.shared, synthetic_seconds=args.synthetic_seconds)
    biosemi = args.shared / "biosemi_bdf" / "test_bdf_stim_channel.bdf"
    if biosemi.exists():  # a third real recording: trained on when another is held out
        import mne

        from mindprint.labeling.verification.corpus import channel_shuffle

        raw = mne.io.read_raw_bdf(biosemi, preload=True, verbose="error").pick("eeg")
        data, sf = raw.get_data(), float(raw.info["sfreq"])
        corpus += [
            Recording("biosemi", data, sf, 1, "biosemi", "real"),
            Recording("surrogate-biosemi", phase_surrogate(data, rng), sf, 0, "biosemi", "surrogate"),
            Recording("shuffled-biosemi", channel_shuffle(data, sf, rng), sf, 0, "biosemi", "shuffled"),
        ]
    reals = [r for r in corpus if r.label == 1]
    windows = featurise(corpus)
    print(f"corpus: {len(windows.labels)} windows; featurised in {time.perf_counter() - started:.0f} s", flush=True)

    forgers: dict[str, Forger] = {
        "surrogate_same_phase": same_phase_surrogate,
        "surrogate_per_channel": per_channel_surrogate,
        "reversed": lambda x, sf, r: x[:, ::-1].copy(),
        "mixture": mixture,
        "am_noise": am_noise,
        "splice_real_then_forged": splice(True),
        "splice_forged_then_real": splice(False),
    }
    rules = {"median": False, "whole": True}  # the shipped decision, and the whole-epoch one
    scores: dict[str, dict[str, list[float]]] = {r: {} for r in rules}
    accepted: dict[str, dict[str, list[bool]]] = {r: {} for r in rules}
    real_rows = []
    real_scores: dict[str, list[float]] = {r: [] for r in rules}
    per_recording_accept: dict[str, dict[str, list[float]]] = {r: {} for r in rules}
    synthetic = next((r for r in corpus if r.kind == "synthetic"), None)
    generator = next(r for r in corpus if r.kind == "generator")
    for held in reals:
        keep = windows.groups != held.group
        train = type(windows)(*(getattr(windows, f)[keep] for f in ("values", "labels", "groups", "kinds", "index")))
        model: LivenessModel = train_liveness(train)
        x, sfreq = held.data, held.sfreq
        # real acceptance per channel presentation
        for k in presentations(x.shape[0]):
            chosen = sorted(rng.choice(x.shape[0], k, replace=False).tolist())
            chosen_epochs = epochs_of(x[chosen], sfreq, args.epochs_per_class, rng)
            rates = []
            for rule, whole in rules.items():
                results = [model.assess(e, sfreq, whole=whole) for e in chosen_epochs]
                rate = float(np.mean([r.accepted for r in results])) if results else float("nan")
                per_recording_accept[rule].setdefault(held.name, []).append(rate)
                rates.append(rate)
                if k == x.shape[0]:
                    real_scores[rule] += [r.score for r in results]
            real_rows.append(
                f"| {held.name} | {k} of {x.shape[0]} | {len(chosen_epochs)} | {rates[0]:.1%} | {rates[1]:.1%} |"
            )
            print(real_rows[-1], flush=True)
        # forgeries of this recording, all channels
        width = int(EPOCH_SECONDS * sfreq)
        classes = dict(forgers)
        classes["var_gaussian"] = lambda e, sf, r: VARS[held.name].simulate(width, r, bootstrap=False)
        classes["var_bootstrap"] = lambda e, sf, r: VARS[held.name].simulate(width, r, bootstrap=True)
        VARS[held.name] = Var.fit(x[:, : min(x.shape[1], int(120 * sfreq))])
        for name, forge in classes.items():
            for epoch in epochs_of(x, sfreq, args.epochs_per_class, rng):
                forged = forge(epoch, sfreq, rng)
                for rule, whole in rules.items():
                    result = model.assess(forged, sfreq, whole=whole)
                    scores[rule].setdefault(name, []).append(result.score)
                    accepted[rule].setdefault(name, []).append(result.accepted)
        for name, source in (("synthetic_board", synthetic), ("generator", generator)):
            if source is None:
                continue
            for epoch in epochs_of(source.data, source.sfreq, args.epochs_per_class // 2, rng):
                for rule, whole in rules.items():
                    result = model.assess(epoch, source.sfreq, whole=whole)
                    scores[rule].setdefault(name, []).append(result.score)
                    accepted[rule].setdefault(name, []).append(result.accepted)
        print(f"held out {held.name}: threshold {model.threshold:.3f}", flush=True)

    class_rows = [
        "| forgery class | epochs | AUC, median (shipped) | false accepts, median | AUC, whole epoch | false accepts, whole epoch |",
        "|---|---|---|---|---|---|",
    ]
    worst = ("", -1.0)
    for name in scores["median"]:
        cells = []
        for rule in rules:
            labels = np.r_[np.ones(len(real_scores[rule])), np.zeros(len(scores[rule][name]))]
            auc = roc_auc_score(labels, np.r_[real_scores[rule], scores[rule][name]])
            rate = float(np.mean(accepted[rule][name]))
            cells += [f"{auc:.3f}", f"{rate:.1%}"]
            if rule == "median" and rate > worst[1]:
                worst = (name, rate)
        class_rows.append(f"| {name} | {len(scores['median'][name])} | {' | '.join(cells)} |")
    pooled = {rule: float(np.mean([np.nanmean(v) for v in per_recording_accept[rule].values()])) for rule in rules}
    real_accept = pooled["median"]
    print(
        "\n| recording | channels | epochs | accepted, median (shipped) | accepted, whole epoch |\n|---|---|---|---|---|\n"
        + "\n".join(real_rows)
    )
    print(
        f"pooled real acceptance (recordings weighted equally): median {pooled['median']:.3f}, whole epoch {pooled['whole']:.3f}"
    )
    print("\n" + "\n".join(class_rows))
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    print(
        f"forgeries: worst_class={worst[0]} worst_false_accept={worst[1]:.3f} real_accept={real_accept:.3f} challenge_auc=nan"
    )


VARS: dict[str, Var] = {}

if __name__ == "__main__":
    main()
