"""Human verification evaluation: liveness ROC per forgery class, replays, lookups.

    .venv/bin/python benchmarks/verification.py [--shared tests/data/eeg] [--skip-million]

Liveness scores are out-of-fold: each real recording is scored by a model trained
without it and without its surrogates and shuffles (thresholds chosen the same way).
Replays are checked against a fingerprint index of half of each real recording;
false matches are counted over distinct windows of the other halves.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this folder would shadow the standard library's `signal` (benchmarks/signal.py)
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import time

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from mindprint.labeling.verification.corpus import build_recordings, phase_surrogate
from mindprint.labeling.verification.liveness import liveness_features
from mindprint.labeling.verification.model import choose_threshold, epoch_scores, featurise, out_of_fold_scores
from mindprint.labeling.verification.uniqueness import FingerprintIndex, fingerprints
from mindprint.signal.filters import design_filter, filter_offline


def tpr_at(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> float:
    false, true, _ = roc_curve(labels, scores)
    return float(true[np.searchsorted(false, fpr, side="right") - 1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data" / "eeg")
    parser.add_argument("--skip-million", action="store_true")
    args = parser.parse_args()
    rows = ["| measure | value |", "|---|---|"]

    recordings = build_recordings(args.shared, synthetic_seconds=30.0)
    start = time.perf_counter()
    windows = featurise(recordings)
    featurised = time.perf_counter() - start
    epochs, oof = epoch_scores(windows, out_of_fold_scores(windows))  # each 4 s epoch: its weakest window
    per_epoch = featurised / len(epochs)
    labels, kinds = windows.labels[epochs], windows.kinds[epochs]
    threshold = choose_threshold(oof, labels, 0.01)
    positives = oof[labels == 1]
    rows.append(f"| 4 s epochs: real / forged | {(labels == 1).sum()} / {(labels == 0).sum()} |")
    rows.append(
        f"| cross-validated threshold; real epochs accepted | {threshold:.3f}; {np.mean(positives >= threshold):.1%} |"
    )
    for kind in ("synthetic", "generator", "noise", "surrogate", "shuffled"):
        negatives = oof[kinds == kind]
        both = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
        scores = np.r_[positives, negatives]
        rows.append(
            f"| liveness vs {kind} ({len(negatives)} epochs): ROC AUC, TPR at 1 % FPR, rejected at threshold | "
            f"{roc_auc_score(both, scores):.4f}, {tpr_at(both, scores):.1%}, {np.mean(negatives < threshold):.1%} |"
        )
        print(rows[-1], flush=True)
    rows.append(f"| liveness cost per 4 s epoch (features of 4 windows, while training) | {1000 * per_epoch:.1f} ms |")

    rng = np.random.default_rng(11)
    index = FingerprintIndex()
    caught: dict[str, list[bool]] = {k: [] for k in ("exact", "rescaled", "noisy", "shifted", "reversed", "permuted")}
    false_matches = 0
    distinct = 0
    query_times = []
    for owner, recording in enumerate(r for r in recordings if r.label == 1):
        x, sf = recording.data, recording.sfreq
        half = x.shape[1] // 2
        index.add(owner, x[:, :half], sf)
        width = int(np.ceil(2 * sf))  # 2 s at least: Elekta runs at 600.615 Hz
        for start in range(int(sf), half - width - int(sf), int(sf)):
            window = x[:, start : start + width]
            noise = filter_offline(window, design_filter(sf, 1.0, 45.0)).std(axis=1, keepdims=True)
            shift = int(rng.integers(1, int(0.5 * sf)))
            variants = {
                "exact": window,
                "rescaled": window * rng.uniform(0.2, 5.0) + rng.normal(0, 0.01),
                "noisy": window + rng.normal(0, 1, window.shape) * 0.3 * noise,
                "shifted": x[:, start + shift : start + shift + width],
                "reversed": window[:, ::-1].copy(),
                "permuted": window[rng.permutation(x.shape[0])],
            }
            for kind, variant in variants.items():
                t0 = time.perf_counter()
                match = index.query(variant, sf)
                query_times.append(time.perf_counter() - t0)
                caught[kind].append(match is not None and match.owner == owner)
        for start in range(half, x.shape[1] - width, int(0.125 * sf)):
            distinct += 1
            false_matches += index.query(x[:, start : start + width], sf) is not None
    for kind, hits in caught.items():
        rows.append(f"| replays caught: {kind} | {np.mean(hits):.1%} ({sum(hits)}/{len(hits)}) |")
    rows.append(
        f"| false matches between distinct real windows | {false_matches}/{distinct} = {false_matches / max(distinct, 1):.3%} |"
    )
    rows.append(
        f"| replay query per 2 s epoch ({len(index):,} stored fingerprints) | {1000 * np.median(query_times):.1f} ms |"
    )
    print("\n".join(rows[-8:]), flush=True)

    # lookup time as the index grows: fill with fingerprints of surrogate EEG
    reals = [r for r in recordings if r.label == 1]
    pool = []
    total = 0
    target = 10**5 if args.skip_million else 10**6
    while total < target:
        base = reals[len(pool) % len(reals)]
        vectors, _, _ = fingerprints(phase_surrogate(base.data, rng), base.sfreq)
        pool.append(vectors)
        total += len(vectors)
    vectors = np.vstack(pool)
    query = reals[0].data[:, 250 * 40 : 250 * 42]
    for size in (10**5, 10**6):
        if size > len(vectors):
            continue
        for kind in ("exact (flat)",):  # the platform's index is in the database: benchmarks/replay.py
            idx = FingerprintIndex()
            t0 = time.perf_counter()
            idx.add_vectors(1, vectors[:size], np.zeros(size, np.int64))
            build = time.perf_counter() - t0
            idx.query(query, 250.0)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                idx.query(query, 250.0)
                times.append(time.perf_counter() - t0)
            rows.append(
                f"| replay lookup, {size:,} stored fingerprints, {kind} | {1000 * np.median(times):.0f} ms per 8-channel epoch (build {build:.1f} s) |"
            )
            print(rows[-1], flush=True)
    features_start = time.perf_counter()
    liveness_features(reals[0].data[:, :2500], 250.0)
    rows.append(
        f"| liveness features for one 10 s Cyton epoch | {1000 * (time.perf_counter() - features_start):.0f} ms |"
    )
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
