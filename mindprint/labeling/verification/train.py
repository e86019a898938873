"""``python -m mindprint.labeling.verification.train SHARED_DIR`` — retrain the shipped liveness model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mindprint.labeling.verification.corpus import build_recordings
from mindprint.labeling.verification.model import MODEL_PATH, featurise, train_liveness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("shared", type=Path, help="the shared/ folder (holds data/eeg)")
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--synthetic-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    windows = featurise(build_recordings(args.shared, synthetic_seconds=args.synthetic_seconds))
    model = train_liveness(windows)
    model.save(args.out)
    print(json.dumps(model.training, indent=1))
    print(f"threshold {model.threshold:.3f} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
