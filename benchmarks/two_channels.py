"""Two-channel liveness by electrode pair: which pairs a 2-channel device is accepted through.

    .venv/bin/python benchmarks/two_channels.py [--shared tests/data/eeg] [--figure docs/figures/two_channel_pairs.png]

``benchmarks/forgeries.py`` presents each 2-channel epoch through a random pair of the
cap and finds 60–88 % of real epochs accepted. This asks which pairs: for every real
recording, held out exactly as there (the model trained without it), every pair of up to 8
channels (on larger caps 60 random pairs) scores its 4 s epochs; each pair is placed by
how strongly its two channels covary (the median ``correlation_z``, band by band |r|√N_eff, over its
epochs' windows — independent channels sit near 1). The table gives the acceptance per
band of that correlation, the figure every pair. Last line::

    two_channels: correlated_accept=X uncorrelated_accept=Y pairs=N

X: epochs of pairs with median ``correlation_z`` ≥ 2 (the pair shares activity beyond
chance) accepted; Y: pairs below 2; N: pairs measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this folder would shadow the standard library's `signal` (benchmarks/signal.py)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import itertools
import time

import numpy as np

from mindprint.labeling.verification.corpus import build_recordings
from mindprint.labeling.verification.model import EPOCH_SECONDS, featurise, train_liveness

BANDS = ((0.0, 1.5), (1.5, 2.0), (2.0, 3.0), (3.0, np.inf))  # median correlation_z of a pair
CORRELATED = 2.0
MAX_PAIRS = 60
EPOCHS_PER_PAIR = 12


Row = tuple[str, int, int, float, float, int]  # recording, i, j, median z, accepted share, epochs


def share(group: list[Row]) -> float:
    """Accepted epochs over the pairs of ``group``, each pair weighted by its epochs."""
    epochs = sum(r[5] for r in group)
    return sum(r[4] * r[5] for r in group) / epochs if epochs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data" / "eeg")
    parser.add_argument("--figure", type=Path, default=None, help="save the scatter of every pair (PNG)")
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(11)
    corpus = build_recordings(args.shared)
    windows = featurise(corpus)
    print(f"corpus featurised in {time.perf_counter() - started:.0f} s", flush=True)
    rows: list[Row] = []
    for held in (r for r in corpus if r.label == 1):
        model = train_liveness(windows.subset(windows.groups != held.group))
        x, sfreq = held.data, held.sfreq
        width = int(EPOCH_SECONDS * sfreq)
        starts = np.arange(0, x.shape[1] - width + 1, max(int(0.5 * sfreq), width))
        starts = starts[np.linspace(0, len(starts) - 1, min(len(starts), EPOCHS_PER_PAIR)).astype(int)]
        pairs = list(itertools.combinations(range(x.shape[0]), 2))
        if len(pairs) > MAX_PAIRS:
            pairs = [pairs[k] for k in sorted(rng.choice(len(pairs), MAX_PAIRS, replace=False))]
        for i, j in pairs:
            epochs = [x[[i, j], s : s + width] for s in starts]
            scored = [model.assess(e, sfreq) for e in epochs]
            z = float(np.median([w for live in scored for w in live.correlation_z]))
            rows.append((held.name, i, j, z, float(np.mean([live.accepted for live in scored])), len(epochs)))
        print(f"{held.name}: {len(pairs)} pairs × {len(starts)} epochs", flush=True)

    names = sorted({r[0] for r in rows}, key=[r[0] for r in rows].index)
    print("\nreal 2-channel epochs accepted, by how strongly the pair covaries (median correlation_z)")
    print(
        "| recording | " + " | ".join(f"{lo:g}–{hi:g}" if np.isfinite(hi) else f"≥ {lo:g}" for lo, hi in BANDS) + " |"
    )
    print("|---|" + "---|" * len(BANDS))
    for name in [*names, "all"]:
        cells = []
        for lo, hi in BANDS:
            inside = [r for r in rows if (name == "all" or r[0] == name) and lo <= r[3] < hi]
            cells.append(f"{share(inside):.1%} ({len(inside)} pairs)" if inside else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")
    strong = [r for r in rows if r[3] >= CORRELATED]
    weak = [r for r in rows if r[3] < CORRELATED]
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
        for name in names:
            mine = [r for r in rows if r[0] == name]
            ax.scatter([r[3] for r in mine], [r[4] for r in mine], s=18, alpha=0.7, label=name)
        ax.axvline(CORRELATED, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("the pair's median correlation_z, band by band |r|√N_eff (independent channels ≈ 1)")
        ax.set_ylabel("real 4 s epochs accepted")
        ax.set_title("Liveness through two channels, by electrode pair (models held out)")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure)
        print(f"figure: {args.figure}")
    print(f"{time.perf_counter() - started:.0f} s in all")
    print(
        f"two_channels: correlated_accept={share(strong):.3f} uncorrelated_accept={share(weak):.3f} pairs={len(rows)}"
    )


if __name__ == "__main__":
    main()
