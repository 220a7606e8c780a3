"""Indexing throughput: ``build_index`` on sample rasters, chips/s and peak memory.

Everything a user's ``gleam-geo index build`` does: open and hash the rasters, lay the
encoder's default chip grid (its card's GSD and chip size), read, preprocess, embed and
write the FAISS index and GeoParquet sidecar.

    python benchmarks/indexing.py
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import Report, cpu_seconds, data_file, release_memory, sample_memory, timed, warm_file_cache
from end_to_end import load_encoder

from gleam_geo.api import build_index

INDEX_RASTERS = ("oam_tcd/manila_10cm.tif", "kampala/kampala_z21_7cm.tif", "netherlands/nl_25cm.tif")
QUICK_RASTERS = ("kampala/kampala_z21_block2.tif",)


def run(
    rasters: Sequence[str] = INDEX_RASTERS,
    *,
    encoder_name: str = "default",
    device: str = "cpu",
    factory: str = "Flat",
    num_workers: int = 2,
) -> dict[str, Any]:
    """Build one index over ``rasters`` in a temporary folder; return time, chips/s and memory."""
    paths = [data_file(name) for name in rasters]
    warm_file_cache(paths)
    encoder = load_encoder(encoder_name, device)
    release_memory()
    with tempfile.TemporaryDirectory() as tmp:
        cpu = cpu_seconds()
        with sample_memory() as memory:
            seconds, index = timed(
                lambda: build_index(
                    paths,
                    Path(tmp) / "index",
                    encoder=encoder,
                    factory=factory,
                    num_workers=num_workers,
                )
            )
        chips = len(index)
        info = index.info()
        index.close()
    return {
        "settings": {
            "rasters": list(rasters),
            "encoder": encoder.model_id,
            "device": encoder.device,
            "tiling": info.get("tiling"),
            "factory": factory,
            "num_workers": num_workers,
        },
        "chips": chips,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds() - cpu,
        "chips_per_s": chips / seconds,
        "memory": memory.as_dict(),
    }


def report(result: dict[str, Any], out: Report) -> None:
    """Add the summary rows of one :func:`run` result to ``out``."""
    section = f"build_index {result['settings']['encoder']} {result['settings']['device']}"
    out.add(section, "throughput", result["chips_per_s"], "chips/s", f"{result['chips']} chips")
    out.add(section, "peak RSS", result["memory"]["peak_total_mib"], "MiB")
    out.add(
        section, "RSS growth", result["memory"]["peak_total_mib"] - result["memory"]["baseline_mib"], "MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one small raster")
    args = parser.parse_args()
    out = Report()
    result = run(
        QUICK_RASTERS if args.quick else INDEX_RASTERS,
        encoder_name=args.encoder,
        device=args.device,
        num_workers=args.workers,
    )
    report(result, out)
    print(out.table())


if __name__ == "__main__":
    main()
