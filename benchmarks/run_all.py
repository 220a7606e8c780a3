"""Run every benchmark, print a summary table and write all results as JSON.

    python benchmarks/run_all.py                  # full run on the CPU (~20-30 min on 2 cores)
    python benchmarks/run_all.py --quick          # smoke run, 2-3 min
    python benchmarks/run_all.py --device cuda    # encoder on the GPU in bfloat16, faiss-gpu search

Ratios (ours against torchgeo, pipeline against encoder alone) are always measured in the
same run, with the variants interleaved. See docs/BENCHMARKS.md for recorded results.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import data_path
import end_to_end
import index_latency
import indexing
from common import ROOT, Report, machine_info, round_floats, write_json

SECTIONS = ("data_path", "end_to_end", "indexing", "index_latency")


def _plan(quick: bool, cuda: bool, hnsw_1m: bool) -> dict[str, Any]:
    """Arguments for each benchmark in full or quick mode, on the CPU or a GPU."""
    if quick:
        return {
            "data_path": [
                {"rasters": data_path.QUICK_RASTERS, "chip_px": px, "reps": 1} for px in (256, 128)
            ],
            "end_to_end": [
                {"encoder_name": "default", "chips": 16, "batch_size": 16, "reps": 1},
                {"encoder_name": "resnet18", "chips": 64, "batch_size": 32, "reps": 1},
            ],
            "indexing": {"rasters": indexing.QUICK_RASTERS},
            "index_latency": {"sizes": (10_000,), "single": 50},
        }
    if cuda:
        e2e = {"chips": 4096, "batch_size": 256, "overlap": 0.75, "reps": 3}
        end = [{"encoder_name": name, **e2e} for name in ("default", "resnet18")]
    else:
        end = [
            {"encoder_name": "default", "chips": 64, "batch_size": 32, "reps": 5},
            {"encoder_name": "resnet18", "chips": 256, "batch_size": 64, "reps": 5},
            {"encoder_name": "resnet18", "chips": 256, "batch_size": 64, "reps": 5, "num_workers": 1},
            {"encoder_name": "resnet18", "chips": 256, "batch_size": 64, "reps": 5, "torch_threads": 1},
        ]
    return {
        "data_path": [{"chip_px": 256, "reps": 5}, {"chip_px": 128, "reps": 3}],
        "end_to_end": end,
        "indexing": {},
        "index_latency": {"sizes": (10_000, 1_000_000), "hnsw_max": 1_000_000 if hnsw_1m else 10_000},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small inputs, one or two repetitions")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (encoder in bfloat16 on cuda)")
    parser.add_argument("--workers", type=int, default=2, help="reader threads / DataLoader workers")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--hnsw-1m", action="store_true", help="also build HNSW32 at 1M vectors (slow)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    plan = _plan(args.quick, cuda, args.hnsw_1m)
    report = Report()
    started = time.time()
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "mode": "quick" if args.quick else "full",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }
    workers = {"num_workers": args.workers}
    if "data_path" in args.only:
        results["data_path"] = []
        for kwargs in plan["data_path"]:
            result = data_path.run(**workers, **kwargs)
            results["data_path"].append(result)
            data_path.report(result, report)
    if "end_to_end" in args.only:
        results["end_to_end"] = []
        for kwargs in plan["end_to_end"]:
            result = end_to_end.run(device=args.device, **({**workers, **kwargs}))
            results["end_to_end"].append(result)
            end_to_end.report(result, report)
    if "indexing" in args.only:
        results["indexing"] = indexing.run(device=args.device, **workers, **plan["indexing"])
        indexing.report(results["indexing"], report)
    if "index_latency" in args.only:
        device = "auto" if cuda else "cpu"
        results["index_latency"] = index_latency.run(device=device, **plan["index_latency"])
        index_latency.report(results["index_latency"], report)
    results["seconds"] = time.time() - started
    results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    results["summary"] = [row.__dict__ for row in report.rows]
    write_json(args.out, round_floats(results))
    print(report.table())
    print(f"\n{results['seconds']:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
