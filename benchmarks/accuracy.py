"""Accuracy benchmark: every suite, calibration fitted on held-out queries, report + plots.

Run from the repository root (the sample data in ../shared/data)::

    .venv/bin/python benchmarks/accuracy.py --out eval_output

It writes ``eval_output/report.md`` and the PNGs; ``--ship`` also writes the fitted
calibration into the package (``gleam_geo/refine/calibration.json``) and copies the plots
to ``docs/images``. A second pass with ``--rotations 1`` measures what rotation
test-time augmentation brings.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from gleam_geo.evaluation import SUITES, evaluate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default="eval_output")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--rotations", type=int, default=4)
    parser.add_argument("--suite", action="append", default=None)
    parser.add_argument("--ship", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    shipped = ROOT / "gleam_geo" / "refine" / "calibration.json"
    calibration = shipped if args.ship else out / "calibration.json"
    report = evaluate(
        args.suite or list(SUITES),
        args.data,
        out / "indexes",
        out,
        seed=1,
        count=args.count,
        rotations=args.rotations,
        calibration_seed=1000,
        calibration_out=calibration,
    )
    print(report.read_text())
    if args.ship:
        for image in out.glob("accuracy_*.png"):
            shutil.copy(image, ROOT / "docs" / "images" / image.name)


if __name__ == "__main__":
    main()
