"""Refit ``match_prob`` on a fit seed and measure it on a held-out seed (ECE, Brier, radius coverage).

Every refined candidate (winner and wrong chips, no early stop) of the harder suites is an
example. Candidates are cached per (suite, seed) as parquet under ``--cache``, so a refit
or a second look costs no localization. Run from the repository root::

    .venv/bin/python benchmarks/calibration_refit.py --indexes /tmp/h3/indexes \\
        --cache eval_output/calibration --fit-seed 1000 --test-seed 1 --ship

``--ship`` writes the refit into ``gleam_geo/refine/calibration.json`` only when the
held-out ECE improves on the shipped model's and is at most 0.1.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from gleam_geo.evaluation import SUITES, run_suite
from gleam_geo.evaluation.metrics import (
    brier_score,
    expected_calibration_error,
    radius_coverage,
    reliability_table,
)
from gleam_geo.refine import Calibration, fit_calibration, load_calibration
from gleam_geo.refine.calibration import FEATURE_NAMES

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COUNTS = {"uav_tilt30": 12, "uav_tilt45": 10, "cross_scale": 8, "out_of_index": 10, "cross_time": 4}


def candidates(suite: str, seed: int, count: int, data: Path, indexes: Path, cache: Path) -> pd.DataFrame:
    """Every refined candidate of ``count`` queries of ``suite`` (read from ``cache`` when there)."""
    path = cache / f"{suite}_seed{seed}_n{count}.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    outcomes, _ = run_suite(SUITES[suite], data, indexes, seed=seed, count=count)
    rows = []
    for query, outcome in enumerate(outcomes):
        for rank, (x, label, error, radius, method) in enumerate(
            zip(
                outcome.calibration_rows,
                outcome.calibration_labels,
                outcome.candidate_errors_m,
                outcome.candidate_radii_m,
                outcome.candidate_methods,
                strict=True,
            )
        ):
            if method != "keypoints":  # structure matches have their own calibration
                continue
            rows.append(
                {"suite": suite, "seed": seed, "query": query, "rank": rank, "label": label}
                | dict(zip(FEATURE_NAMES, x.tolist(), strict=True))
                | {"error_m": error, "radius_m": radius, "seconds": outcome.seconds}
            )
    frame = pd.DataFrame(rows)
    cache.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    return frame


def choose_l2(frame: pd.DataFrame, grid: tuple[float, ...] = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0)) -> float:
    """The ridge penalty with the lowest 5-fold log loss, folds grouped by query."""
    groups = pd.factorize(frame["suite"] + "/" + frame["query"].astype(str))[0] % 5
    x, y = frame[list(FEATURE_NAMES)].to_numpy(), frame["label"].to_numpy()
    losses = {}
    for l2 in grid:
        loss = 0.0
        for fold in range(5):
            test = groups == fold
            p = np.clip(fit_calibration(x[~test], y[~test], l2=l2).probability(x[test]), 1e-6, 1 - 1e-6)
            loss -= np.sum(y[test] * np.log(p) + (1 - y[test]) * np.log(1 - p))
        losses[l2] = loss / len(frame)
    print("cross-validated log loss by l2: " + ", ".join(f"{k:g}: {v:.4f}" for k, v in losses.items()))
    return min(losses, key=losses.get)


def describe(name: str, calibration: Calibration, frame: pd.DataFrame) -> None:
    """Print ECE, Brier, the reliability table and the not-in-index maximum ``match_prob``."""
    probs = calibration.probability(frame[list(FEATURE_NAMES)].to_numpy())
    labels = frame["label"].to_numpy()
    print(f"\n## {name}: {len(frame)} candidates, {int(labels.sum())} right")
    print(f"ECE {expected_calibration_error(probs, labels):.4f}  Brier {brier_score(probs, labels):.4f}")
    print("| bin | n | mean p | frequency |\n|---|---|---|---|")
    for low, high, n, mean_p, freq in reliability_table(probs, labels):
        print(f"| {low:.1f}-{high:.1f} | {n} | {mean_p:.3f} | {freq:.3f} |")
    for suite, part in frame.assign(p=probs).groupby("suite"):
        best = part.groupby("query")["p"].max()
        print(f"{suite}: max match_prob per query median {best.median():.3f}, max {best.max():.3f}, "
              f"verdict (>= 0.5) {np.mean(best >= 0.5):.0%}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--indexes", type=Path, default=Path("eval_output/indexes"))
    parser.add_argument("--cache", type=Path, default=Path("eval_output/calibration"))
    parser.add_argument("--fit-seed", type=int, default=1000)
    parser.add_argument("--test-seed", type=int, default=1)
    parser.add_argument(
        "--suite", action="append", default=None, help="suite (repeatable; default: the hard ones)"
    )
    parser.add_argument("--count", type=int, default=None, help="queries per suite (default: per-suite)")
    parser.add_argument("--l2", type=float, default=None, help="ridge penalty (default: cross-validated)")
    parser.add_argument(
        "--ship", action="store_true", help="write the refit into the package if it is better"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}")
    suites = args.suite or list(DEFAULT_COUNTS)
    frames = {}
    for seed in (args.fit_seed, args.test_seed):
        frames[seed] = pd.concat(
            [
                candidates(
                    s, seed, args.count or DEFAULT_COUNTS.get(s, 10), args.data, args.indexes, args.cache
                )
                for s in suites
            ],
            ignore_index=True,
        )
    fit, test = frames[args.fit_seed], frames[args.test_seed]
    shipped = load_calibration()
    l2 = args.l2 if args.l2 is not None else choose_l2(fit)
    refit = fit_calibration(fit[list(FEATURE_NAMES)].to_numpy(), fit["label"].to_numpy(), l2=l2)
    print(f"l2 {l2:g}, refit weights {refit.weights} bias {refit.bias:.4f}")
    describe(f"shipped, held-out seed {args.test_seed}", shipped, test)
    describe(f"refit (seed {args.fit_seed}), held-out seed {args.test_seed}", refit, test)
    for seed, frame in frames.items():
        right = frame[(frame["label"] == 1) & frame["radius_m"].notna()]
        coverage = radius_coverage(right["error_m"], right["radius_m"])
        ratio = (right["error_m"] / right["radius_m"]).quantile(0.9)
        print(f"seed {seed}: radius coverage {coverage:.1%} over {len(right)} right matches, "
              f"p90 error/radius {ratio:.3f}")  # fmt: skip
    old = expected_calibration_error(shipped.probability(test[list(FEATURE_NAMES)].to_numpy()), test["label"])
    new = expected_calibration_error(refit.probability(test[list(FEATURE_NAMES)].to_numpy()), test["label"])
    if args.ship and new < old and new <= 0.1:
        refit.save(ROOT / "gleam_geo" / "refine" / "calibration.json")
        print("shipped the refit")


if __name__ == "__main__":
    main()
