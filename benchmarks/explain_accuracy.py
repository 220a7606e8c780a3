"""Verdict accuracy of an explainer on the accuracy harness's pairs (GLEAM-X, issue 5).

Pairs, all from the harness's fixed-seed queries and its 5-raster Kampala index:

* true pairs: each ``uav_tilt30`` query with the chip whose footprint holds its true centre;
* hard false pairs: the same query with the best-retrieved chip that lies well away from
  it: so far that the reference patch refinement reads around the chip (3x the chip's side)
  cannot hold any of the query's ground;
* out-of-index false pairs: each ``out_of_index`` query (pix4d, not indexed) with its
  best-retrieved chip.

Each pair goes through ``gleam_geo.explain`` (refinement, evidence, backend); the verdict
is scored against the label. Run from the repository root::

    .venv/bin/python benchmarks/explain_accuracy.py --indexes eval_output/indexes

``--examples DIR`` also writes the first true and false pair's figures and their
explanations in English and Chinese (for docs/EXPLAIN.md).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS, Transformer

import gleam_geo
from gleam_geo.evaluation import SUITES, open_suite_index, render_view, sample_specs
from gleam_geo.refine import search_rotations

ROOT = Path(__file__).resolve().parents[1]


def _chip_centres(index, crs):
    """Centres of every chip, in ``crs``, and the sidecar rows."""
    chips = index.chips(np.arange(len(index)))
    centres = []
    for chip_crs, wkt in zip(chips["crs"], chips["native_footprint"], strict=True):
        to_query = Transformer.from_crs(
            CRS.from_user_input(chip_crs), CRS.from_user_input(crs), always_xy=True
        )
        centre = shapely.from_wkt(wkt).centroid
        centres.append(to_query.transform(centre.x, centre.y))
    return chips, np.array(centres)


def _pairs(suite_name, index, data, count, seed):
    """(label, query, chip row) for the suite's queries."""
    suite = SUITES[suite_name]
    specs = sample_specs(
        str(data / suite.query_source), count or suite.count, seed, size_px=suite.size_px,
        side_m=suite.side_m, heading=suite.heading, tilt_deg=suite.tilt_deg, photometric=suite.photometric,
    )  # fmt: skip
    encoder = gleam_geo.get_encoder(index.manifest["model"]["id"])
    chips = centres = None
    for spec in specs:
        query = render_view(spec)
        _, ids = search_rotations(index, encoder, query.pixels, "uav", 20)
        if not suite.in_index:
            yield False, "out_of_index", query, index.chips([int(ids[0])]).iloc[0]
            continue
        if chips is None:
            chips, centres = _chip_centres(index, query.crs)
        distance = np.hypot(*(centres - np.array(query.true_xy)).T)
        inside = [
            i
            for i in np.argsort(distance)
            if shapely.from_wkt(chips["native_footprint"].iloc[i]).contains(shapely.Point(query.true_xy))
        ]
        if inside:
            yield True, "true", query, chips.iloc[inside[0]]
        # far: the reference patch read around the chip (3x its side) cannot hold any of the view
        chip_side = math.sqrt(shapely.from_wkt(chips["native_footprint"].iloc[0]).area)
        reach = 1.5 * math.sqrt(2) * chip_side + math.sqrt(2) * spec.ground_side_m
        far = [int(i) for i in ids if distance[int(i)] > reach]
        if far:
            yield False, "retrieved_far", query, chips.iloc[far[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--indexes", default="eval_output/indexes")
    parser.add_argument("--count", type=int, default=None, help="queries per suite (default: the suite's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", default="evidence")
    parser.add_argument("--out", default="eval_output/explain_accuracy.json")
    parser.add_argument("--examples", default=None, help="write example figures and texts here")
    args = parser.parse_args()
    data = Path(args.data)
    index = open_suite_index(SUITES["uav_tilt30"], data, Path(args.indexes))
    rows, examples = [], {}
    for suite_name in ("uav_tilt30", "out_of_index"):
        for label, kind, query, chip in _pairs(suite_name, index, data, args.count, args.seed):
            start = time.perf_counter()
            figure_dir = Path(args.examples) if args.examples and kind not in examples else None
            explanation = gleam_geo.explain(
                query.pixels, chip, index=index, backend=args.backend, figure_dir=figure_dir
            )
            seconds = time.perf_counter() - start
            evidence = explanation.evidence
            rows.append(
                {
                    "kind": kind,
                    "label": label,
                    "verdict": explanation.verdict,
                    "confidence": explanation.confidence,
                    "match_prob": evidence.match_prob if evidence else None,
                    "inliers": evidence.inliers if evidence else None,
                    "seconds": round(seconds, 2),
                }
            )
            if figure_dir is not None:
                zh = gleam_geo.explain(query.pixels, chip, index=index, backend=args.backend, language="zh")
                examples[kind] = {
                    "chip_id": str(chip["chip_id"]),
                    "figure": str(explanation.figure),
                    "en": explanation.reasoning,
                    "zh": zh.reasoning,
                    "evidence": evidence.to_dict() if evidence else None,
                }
            print(
                kind,
                label,
                explanation.verdict,
                f"{explanation.confidence:.2f}",
                f"{seconds:.1f}s",
                flush=True,
            )
    summary = {}
    for kind in ("true", "retrieved_far", "out_of_index", "all"):
        subset = [row for row in rows if kind in ("all", row["kind"])]
        if subset:
            right = sum(row["verdict"] == row["label"] for row in subset)
            summary[kind] = {"pairs": len(subset), "correct": right, "accuracy": right / len(subset)}
    report = {
        "backend": args.backend,
        "count": args.count,
        "seed": args.seed,
        "summary": summary,
        "pairs": rows,
        "examples": examples,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print("| pairs | n | correct | verdict accuracy |\n|---|---|---|---|")
    for kind, numbers in summary.items():
        print(f"| {kind} | {numbers['pairs']} | {numbers['correct']} | {numbers['accuracy']:.1%} |")


if __name__ == "__main__":
    main()
