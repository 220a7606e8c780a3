"""Data path alone: read, chip and preprocess rasters into float32 NCHW batches, no encoder.

Ours (:func:`gleam_geo.raster.iter_chip_batches`) against torchgeo's ``RasterDataset`` +
``GridGeoSampler`` + ``DataLoader``, on the same rasters with the same chip grid: native
resolution (neither side resamples much), the same chip size and overlap, batch size,
number of workers and normalisation. Each repetition runs both sides over every raster,
alternating which goes first; chips/s is the median over repetitions.

    python benchmarks/data_path.py --chip-px 256 --reps 5
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from common import Report, cpu_seconds, data_file, median, sample_memory, timed, warm_file_cache
from plain_path import iter_batches as plain_batches
from torch import nn
from torchgeo_path import iter_batches as torchgeo_batches
from torchgeo_path import make_dataset, warps

from gleam_geo.models import ModelCard, TorchEncoder
from gleam_geo.raster import RasterSource, TilingConfig, iter_chip_batches, open_raster
from gleam_geo.records import VIEWS

DATA_PATH_RASTERS = (
    "oam_tcd/manila_10cm.tif",
    "kampala/kampala_z21_7cm.tif",
    "netherlands/nl_25cm.tif",
    "naip_nd/naip_m_4709963_se_14_1_20090818.tif",
    "naip_nd/naip_m_4709963_se_14_1_20140720.tif",
    "naip_nd/naip_m_4709963_se_14_1_20200831.tif",
)
QUICK_RASTERS = DATA_PATH_RASTERS[:2]
MEAN = (0.485, 0.456, 0.406)  # ImageNet, per channel, as most encoder cards
STD = (0.229, 0.224, 0.225)
SIDES = ("ours", "torchgeo", "plain")

Preprocess = Callable[[np.ndarray], np.ndarray]


def library_preprocess(chip_px: int, mean: Sequence[float], std: Sequence[float]) -> Preprocess:
    """The library's own preprocessing (:meth:`TorchEncoder.preprocess`) for ``chip_px`` inputs.

    A :class:`TorchEncoder` around an identity network, whose card asks for the chip size,
    so nothing is resized: exactly what :func:`gleam_geo.embedding.embed_chips` runs in the
    reader threads, minus the encoder.
    """
    card = ModelCard(
        name="bench-identity",
        architecture="identity",
        embed_dim=3,
        image_size={view: (chip_px, chip_px) for view in VIEWS},
        mean=tuple(mean),
        std=tuple(std),
        chip_size_px=chip_px,
    )
    encoder = TorchEncoder(nn.Identity(), card, device="cpu", checksum="none")
    return functools.partial(encoder.preprocess, view="satellite")


def native_config(source: RasterSource, chip_px: int, overlap: float) -> TilingConfig:
    """A grid at the raster's own column spacing, keeping every chip (as torchgeo does)."""
    return TilingConfig(
        gsd_m=source.pixel_size_m[0], chip_size_px=chip_px, overlap=overlap, max_nodata_fraction=1.0
    )


def side_batches(
    side: str, setup: dict[str, Any], chip_px: int, overlap: float, batch_size: int, num_workers: int
) -> Iterator[np.ndarray]:
    """Float32 NCHW batches of one raster from ``side``: ours, torchgeo or plain rasterio."""
    if side == "torchgeo":
        return torchgeo_batches(setup["dataset"], chip_px, overlap, batch_size, num_workers)
    config = native_config(setup["source"], chip_px, overlap)
    if side == "plain":
        return plain_batches(setup["source"], config, MEAN, STD, batch_size, num_workers)
    preprocess = library_preprocess(chip_px, MEAN, STD)
    batches = iter_chip_batches(
        [setup["source"]], config, preprocess, batch_size=batch_size, num_workers=num_workers
    )
    return (batch.pixels for batch in batches)


def consume(batches: Iterator[np.ndarray]) -> tuple[int, float]:
    """Count the chips of a batch stream and sum their pixels (a check that both sides read the same)."""
    chips, total = 0, 0.0
    for batch in batches:
        chips += len(batch)
        total += float(batch[:, :, ::16, ::16].mean(dtype=np.float64)) * len(batch)
    return chips, total / max(chips, 1)


def _one(side: str, setup: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """Time one side over one raster: wall and CPU seconds, chips, peak memory."""
    stream = side_batches(side, setup, **opts)
    cpu = cpu_seconds()
    with sample_memory() as memory:
        seconds, (chips, mean_value) = timed(lambda: consume(stream))
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds() - cpu,
        "chips": chips,
        "mean_value": mean_value,
        "memory": memory.as_dict(),
    }


def run(
    rasters: Sequence[str] = DATA_PATH_RASTERS,
    *,
    chip_px: int = 256,
    overlap: float = 0.5,
    batch_size: int = 32,
    num_workers: int = 2,
    reps: int = 5,
) -> dict[str, Any]:
    """Measure both data paths; return per-repetition and median results.

    Within a repetition both sides run back to back on each raster (alternating which goes
    first), so a change in machine load hits all alike.
    """
    paths = [data_file(name) for name in rasters]
    warm_file_cache(paths)
    setups = []
    for path in paths:
        source = open_raster(path)
        _ = source.checksum  # hashed once per raster, as any index build does
        dataset = make_dataset(path, MEAN, STD)
        setups.append({"path": path, "source": source, "dataset": dataset, "warps": warps(dataset, path)})
    opts = {"chip_px": chip_px, "overlap": overlap, "batch_size": batch_size, "num_workers": num_workers}
    for setup in setups:  # warm-up: imports, GDAL caches, worker start-up code paths
        for side in SIDES:
            _one(side, setup, opts)
    runs: dict[str, list[list[dict[str, Any]]]] = {side: [] for side in SIDES}
    for rep in range(reps):
        for side in SIDES:
            runs[side].append([])
        for i, setup in enumerate(setups):
            turn = (rep + i) % len(SIDES)
            for side in SIDES[turn:] + SIDES[:turn]:
                runs[side][-1].append(_one(side, setup, opts))
    return _summarise(setups, runs, opts | {"reps": reps})


def _cpu_ms(item: dict[str, Any]) -> float:
    return 1000 * item["cpu_seconds"] / item["chips"]


def _side_summary(reps: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Totals over the rasters of each repetition, then medians over repetitions."""
    chips = sum(item["chips"] for item in reps[0])
    rates = [chips / sum(item["seconds"] for item in rep) for rep in reps]
    cpu_ms = [1000 * sum(item["cpu_seconds"] for item in rep) / chips for rep in reps]
    return {
        "chips_per_rep": chips,
        "median_chips_per_s": median(rates),
        "chips_per_s": rates,
        "median_cpu_ms_per_chip": median(cpu_ms),
        "peak_total_mib": max(item["memory"]["peak_total_mib"] for rep in reps for item in rep),
        "peak_children_mib": max(item["memory"]["peak_children_mib"] for rep in reps for item in rep),
        "baseline_mib": reps[0][0]["memory"]["baseline_mib"],
    }


def _summarise(
    setups: list[dict[str, Any]], runs: dict[str, list[list[dict[str, Any]]]], opts: dict[str, Any]
) -> dict[str, Any]:
    sides = {side: _side_summary(reps) for side, reps in runs.items()}
    per_raster = []
    for i, setup in enumerate(setups):
        entry: dict[str, Any] = {"raster": setup["path"].name, "torchgeo_warps": setup["warps"]}
        for side, reps in runs.items():
            items = [rep[i] for rep in reps]
            entry[side] = {
                "chips": items[0]["chips"],
                "median_chips_per_s": median([item["chips"] / item["seconds"] for item in items]),
                "median_cpu_ms_per_chip": median([_cpu_ms(item) for item in items]),
                "mean_value": items[0]["mean_value"],
            }
        entry["ratio"] = entry["ours"]["median_chips_per_s"] / entry["torchgeo"]["median_chips_per_s"]
        per_raster.append(entry)
    ours, theirs = sides["ours"], sides["torchgeo"]
    return {
        "settings": opts,
        **sides,
        "plain_ratio": sides["plain"]["median_chips_per_s"] / theirs["median_chips_per_s"],
        "ratio": ours["median_chips_per_s"] / theirs["median_chips_per_s"],
        "ratio_per_rep": [a / b for a, b in zip(ours["chips_per_s"], theirs["chips_per_s"], strict=True)],
        "cpu_ratio": theirs["median_cpu_ms_per_chip"] / ours["median_cpu_ms_per_chip"],
        "per_raster": per_raster,
    }


def report(result: dict[str, Any], out: Report) -> None:
    """Add the summary rows of one :func:`run` result to ``out``."""
    px = result["settings"]["chip_px"]
    section = f"data path {px}px"
    out.add(section, "ours", result["ours"]["median_chips_per_s"], "chips/s")
    out.add(section, "torchgeo", result["torchgeo"]["median_chips_per_s"], "chips/s")
    out.add(section, "ratio ours/torchgeo", result["ratio"], "x", "target >= 3")
    out.add(section, "plain rasterio reads", result["plain"]["median_chips_per_s"], "chips/s")
    out.add(section, "ratio plain/torchgeo", result["plain_ratio"], "x", "reference floor")
    out.add(section, "CPU ms/chip ours", result["ours"]["median_cpu_ms_per_chip"], "ms")
    out.add(section, "CPU ms/chip torchgeo", result["torchgeo"]["median_cpu_ms_per_chip"], "ms")
    out.add(section, "peak RSS ours", result["ours"]["peak_total_mib"], "MiB")
    out.add(section, "peak RSS torchgeo (+workers)", result["torchgeo"]["peak_total_mib"], "MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chip-px", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="two rasters, two repetitions")
    args = parser.parse_args()
    out = Report()
    for chip_px in args.chip_px:
        result = run(
            QUICK_RASTERS if args.quick else DATA_PATH_RASTERS,
            chip_px=chip_px,
            batch_size=args.batch_size,
            num_workers=args.workers,
            reps=2 if args.quick else args.reps,
        )
        report(result, out)
    print(out.table())


if __name__ == "__main__":
    main()
