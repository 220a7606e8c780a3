"""Latency of ``localize(..., refine=True)`` per query, with and without the refiner's early stop.

Queries are synthetic UAV views (suite ``uav_tilt30``) searched in the suite's index (built
under ``--indexes`` on first use). Both variants run on the same queries in the same process,
alternating, so their ratio holds on a shared machine; the load average is printed too.

    .venv/bin/python benchmarks/localize_latency.py --indexes eval_output/indexes --count 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from gleam_geo.api import localize
from gleam_geo.evaluation import SUITES, open_suite_index
from gleam_geo.evaluation.queries import render_view, sample_specs
from gleam_geo.refine import Refiner

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--indexes", default="eval_output/indexes")
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suite = SUITES["uav_tilt30"]
    index = open_suite_index(suite, Path(args.data), Path(args.indexes))
    specs = sample_specs(
        str(Path(args.data) / suite.query_source), args.count, 1, size_px=suite.size_px,
        side_m=suite.side_m, tilt_deg=suite.tilt_deg, photometric=True,
    )  # fmt: skip
    queries = [render_view(spec) for spec in specs]
    variants = {"refine all top_k": Refiner(stop_prob=None), "early stop 0.95": Refiner()}
    localize(queries[0].pixels, index, crs=queries[0].crs)  # warm-up: model load, caches
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for query in queries:
        for name, refiner in variants.items():
            start = time.perf_counter()
            localize(query.pixels, index, crs=query.crs, refiner=refiner)
            seconds[name].append(time.perf_counter() - start)
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{len(queries)} queries, {len(index)} chips, torch threads {args.threads}, load average {load}")
    for name, values in seconds.items():
        print(f"{name}: median {statistics.median(values):.2f} s, max {max(values):.2f} s")


if __name__ == "__main__":
    main()
