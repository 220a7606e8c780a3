"""Fit the structure search's ``match_prob`` on one seed, measure it on another.

Examples come from the ``cross_time`` suite's queries (NAIP 2009 views, known ground
resolution), each searched twice with :meth:`Refiner.search_structure`:

* in the whole 2020 raster: label 1 when the match lands within ``--correct-m`` of the truth;
* in the half of the raster (left/right or top/bottom) that does not hold the query: label 0,
  the place is not there, so these are the best wrong peaks a search can find.

and from the ``out_of_index`` suite's queries (pix4d drone views, a place in no index),
each searched in a window of one of that suite's indexed rasters (Kampala, Manila, Valencia,
the Netherlands) as the fallback would: label 0, another landscape.

It reports held-out ECE, Brier, accuracy at 0.5, and how often the error radius holds the
truth; ``--ship`` writes the fit to ``gleam_geo/refine/structure_calibration.json``::

    .venv/bin/python benchmarks/structure_calibration.py --fit-seed 1000 --test-seed 1 --ship
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from gleam_geo.evaluation import SUITES
from gleam_geo.evaluation.metrics import brier_score, expected_calibration_error, reliability_table
from gleam_geo.evaluation.queries import render_view, sample_specs
from gleam_geo.raster import RasterSource, open_raster
from gleam_geo.records import PixelWindow
from gleam_geo.refine import Refiner, fit_calibration
from gleam_geo.refine.refiner import STRUCTURE_RADIUS_PX, load_structure_calibration, structure_search_gsd
from gleam_geo.refine.structure import STRUCTURE_FEATURES

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "gleam_geo" / "refine" / "structure_calibration.json"


def _half_without(source: RasterSource, col: float, row: float, radius_px: float) -> PixelWindow | None:
    """The half of ``source`` farthest from ``(col, row)``, if the query disk stays out of it."""
    halves = [
        (col - source.width / 2, PixelWindow(0, 0, source.width // 2, source.height)),
        (
            source.width / 2 - col,
            PixelWindow(source.width // 2, 0, source.width - source.width // 2, source.height),
        ),
        (row - source.height / 2, PixelWindow(0, 0, source.width, source.height // 2)),
        (
            source.height / 2 - row,
            PixelWindow(0, source.height // 2, source.width, source.height - source.height // 2),
        ),
    ]  # (distance from the query centre to the half's near edge, the half)
    clearance, window = max(halves, key=lambda item: item[0])
    return window if clearance > radius_px else None


def examples(seed: int, count: int, data: Path, correct_m: float) -> list[dict]:
    """Feature rows, labels, errors and radii of ``count`` queries searched twice."""
    suite = SUITES["cross_time"]
    specs = sample_specs(
        str(data / suite.query_source), count, seed, size_px=suite.size_px, side_m=suite.side_m
    )
    source = open_raster(str(data / suite.index_rasters[0]))
    whole = PixelWindow(0, 0, source.width, source.height)
    refiner = Refiner()
    rows = []
    for spec in specs:
        query = render_view(spec)
        gsd = spec.ground_side_m / spec.size_px
        col, row = ~source.transform * query.true_xy
        radius_px = spec.ground_side_m / math.sqrt(2) / source.gsd_m
        start = time.perf_counter()
        found = refiner.search_structure(query.pixels, source, whole, gsd)
        seconds = time.perf_counter() - start
        if found is not None:
            point = found.projection.point
            error = math.hypot(point.x - query.true_xy[0], point.y - query.true_xy[1])
            rows.append(
                {"x": found.features, "label": int(error <= correct_m), "error": error,
                 "radius": found.projection.error_radius_m, "seconds": seconds}
            )  # fmt: skip
        window = _half_without(source, col, row, radius_px)
        if window is not None:
            absent = refiner.search_structure(query.pixels, source, window, gsd)
            if absent is not None:
                rows.append(
                    {"x": absent.features, "label": 0, "error": math.nan, "radius": math.nan, "seconds": 0}
                )
    return rows


def out_of_index_examples(seed: int, count: int, data: Path) -> list[dict]:
    """Negatives: drone views of a place in no index, each searched in the middle of one of
    the out_of_index suite's indexed rasters in turn (urban, fields, another city), as the
    fallback would search them."""
    suite = SUITES["out_of_index"]
    specs = sample_specs(
        str(data / suite.query_source), count, seed, size_px=suite.size_px, side_m=suite.side_m,
        tilt_deg=suite.tilt_deg, photometric=suite.photometric,
    )  # fmt: skip
    sources = [open_raster(str(data / name)) for name in suite.index_rasters]
    refiner = Refiner()
    rows = []
    for number, spec in enumerate(specs):
        source = sources[number % len(sources)]
        query = render_view(spec)
        gsd = spec.ground_side_m / spec.size_px
        search_gsd = structure_search_gsd(query.pixels, gsd, source)
        side = round(refiner.structure_window_px * search_gsd / source.gsd_m)
        side = min(side, source.width, source.height)
        window = PixelWindow((source.width - side) // 2, (source.height - side) // 2, side, side)
        found = refiner.search_structure(query.pixels, source, window, gsd)
        if found is not None:
            rows.append(
                {"x": found.features, "label": 0, "error": math.nan, "radius": math.nan, "seconds": 0}
            )
    return rows


def _report(name: str, calibration, rows: list[dict]) -> float:
    x = np.array([r["x"] for r in rows])
    y = np.array([r["label"] for r in rows])
    p = calibration.probability(x)
    ece = expected_calibration_error(p, y)
    right = [r for r in rows if r["label"] == 1]
    coverage = np.mean([r["error"] <= r["radius"] for r in right]) if right else math.nan
    # Errors in search pixels (the radius is STRUCTURE_RADIUS_PX of them), to size the radius.
    pixels = np.array([r["error"] / r["radius"] * STRUCTURE_RADIUS_PX for r in right])
    if right:
        print(
            f"{name}: right matches off by median {np.median(pixels):.1f}, p90 "
            f"{np.quantile(pixels, 0.9):.1f} search px (radius {STRUCTURE_RADIUS_PX} px)"
        )
    print(
        f"{name}: {len(rows)} examples ({y.sum()} right), ECE {ece:.3f}, Brier {brier_score(p, y):.3f}, "
        f"accuracy at 0.5 {np.mean((p >= 0.5) == y):.1%}, max p of a wrong example "
        f"{p[y == 0].max():.3f}, min p of a right one {p[y == 1].min() if y.any() else math.nan:.3f}, "
        f"radius holds the truth {coverage:.0%} of right matches"
    )
    return ece


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--fit-seed", type=int, default=1000)
    parser.add_argument("--test-seed", type=int, default=1)
    parser.add_argument("--fit-count", type=int, default=40)
    parser.add_argument("--test-count", type=int, default=30)
    parser.add_argument("--correct-m", type=float, default=SUITES["cross_time"].correct_radius_m)
    parser.add_argument("--ship", action="store_true", help="write the fit when its held-out ECE <= 0.1")
    args = parser.parse_args()
    data = Path(args.data)
    fit_rows = examples(args.fit_seed, args.fit_count, data, args.correct_m)
    fit_rows += out_of_index_examples(args.fit_seed, args.fit_count, data)
    test_rows = examples(args.test_seed, args.test_count, data, args.correct_m)
    test_rows += out_of_index_examples(args.test_seed, args.test_count, data)
    print(
        "structure search: median "
        f"{np.median([r['seconds'] for r in test_rows if r['seconds']]):.1f} s per query"
    )
    fitted = fit_calibration(
        np.array([r["x"] for r in fit_rows]), np.array([r["label"] for r in fit_rows]),
        feature_names=STRUCTURE_FEATURES,
    )  # fmt: skip
    print(f"fitted: weights {fitted.weights}, bias {fitted.bias:.3f}")
    _report(f"shipped, held-out seed {args.test_seed}", load_structure_calibration(), test_rows)
    _report(f"fitted, fit seed {args.fit_seed}", fitted, fit_rows)
    ece = _report(f"fitted, held-out seed {args.test_seed}", fitted, test_rows)
    x = np.array([r["x"] for r in test_rows])
    for low, high, count, confidence, accuracy in reliability_table(
        fitted.probability(x).tolist(), [r["label"] for r in test_rows]
    ):
        print(
            f"  p in [{low:.1f}, {high:.1f}): {count} examples, mean p {confidence:.2f}, right {accuracy:.2f}"
        )
    if args.ship and ece <= 0.1:
        fitted.save(SHIPPED)
        print(f"wrote {SHIPPED}")


if __name__ == "__main__":
    main()
