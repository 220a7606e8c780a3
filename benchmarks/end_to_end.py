"""End to end: chips read, preprocessed and embedded, against the encoder's forward time alone.

Three variants, the same encoder, the same number of chips and batch size:

* ``encoder_only``: ``encoder.embed_batch`` on batches made beforehand (no reads at all);
* ``ours``: :func:`gleam_geo.embedding.embed_chips`, reader threads overlapped with the encoder;
* ``torchgeo``: ``RasterDataset`` + ``GridGeoSampler`` + ``DataLoader`` feeding the same encoder.

Pipeline overhead is ``(ours - encoder_only) / encoder_only`` in wall time. Chips come from
one raster at its native resolution, at the encoder's input size, so neither side resizes.
On CUDA the encoder runs in bfloat16 (``gleam_geo.models.device.autocast``).

    python benchmarks/end_to_end.py --encoder default --chips 128 --reps 3
    python benchmarks/end_to_end.py --device cuda --chips 4096 --batch-size 256 --overlap 0.75
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from common import Report, cpu_seconds, data_file, median, sample_memory, timed, warm_file_cache
from data_path import native_config
from torchgeo_path import iter_batches as torchgeo_batches
from torchgeo_path import make_dataset

from gleam_geo.embedding import embed_chips
from gleam_geo.models import Encoder, get_encoder
from gleam_geo.models.device import autocast_dtype
from gleam_geo.raster import RasterCatalog, iter_chip_batches, open_raster

E2E_RASTER = "kampala/kampala_z21_7cm.tif"
VARIANTS = ("encoder_only", "ours", "torchgeo")
ENCODERS = {
    "default": (None, {}),
    "resnet18": ("timm:resnet18", {"allow_random": True, "img_size": 128}),
}
"""Benchmark encoder names: the offline default (geoembed-v3, 128 px) and a cheap timm ResNet-18."""


def load_encoder(name: str, device: str) -> Encoder:
    """An encoder from :data:`ENCODERS` (or any name :func:`get_encoder` takes) on ``device``."""
    model, kwargs = ENCODERS.get(name, (name, {}))
    return get_encoder(model, device=device, **kwargs)


def _take(stream: Iterator[Any], chips: int, size: Any) -> int:
    """Consume ``stream`` until ``chips`` chips have gone by; close it; return the count."""
    count = 0
    try:
        for item in stream:
            count += size(item)
            if count >= chips:
                break
    finally:
        stream.close()  # type: ignore[attr-defined]
    return count


class TimedEncoder:
    """Wraps an encoder and adds up the time spent in ``embed_batch`` (its forward passes)."""

    def __init__(self, encoder: Encoder) -> None:
        self.inner = encoder
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.inner.embed_batch(batch)
        finally:
            self.seconds += time.perf_counter() - start


class Setup:
    """Everything the three variants share: encoder, raster, chip grid, premade batches."""

    def __init__(
        self, encoder: Encoder, chips: int, batch_size: int, num_workers: int, overlap: float
    ) -> None:
        path = data_file(E2E_RASTER)
        warm_file_cache([path])
        self.encoder = TimedEncoder(encoder)
        self.chips = chips
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.chip_px = encoder.card.input_size("satellite")[0]
        self.overlap = overlap
        source = open_raster(path)
        self.catalog = RasterCatalog([source])
        self.config = native_config(source, self.chip_px, overlap)
        self.dataset = make_dataset(path, encoder.card.mean, encoder.card.std)
        self.premade = self._premade()

    def _premade(self) -> list[np.ndarray]:
        """The first ``chips`` chips, preprocessed by the encoder, in ``batch_size`` batches."""
        stream = iter_chip_batches(
            self.catalog,
            self.config,
            lambda image: self.encoder.preprocess(image, "satellite"),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
        )
        batches = [batch.pixels for batch in itertools.islice(stream, -(-self.chips // self.batch_size))]
        stream.close()
        pixels = np.concatenate(batches)[: self.chips]
        if len(pixels) < self.chips:
            raise ValueError(f"{E2E_RASTER} has only {len(pixels)} chips; ask for fewer or raise --overlap")
        return [pixels[i : i + self.batch_size] for i in range(0, len(pixels), self.batch_size)]

    def encoder_only(self) -> int:
        for batch in self.premade:
            self.encoder.embed_batch(batch)
        return sum(len(batch) for batch in self.premade)

    def ours(self) -> int:
        stream = embed_chips(
            self.catalog,
            self.encoder,  # type: ignore[arg-type]
            self.config,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
        )
        return _take(stream, self.chips, lambda item: len(item[1]))

    def torchgeo(self) -> int:
        def embedded() -> Iterator[np.ndarray]:
            for batch in torchgeo_batches(
                self.dataset, self.chip_px, self.overlap, self.batch_size, self.num_workers
            ):
                yield self.encoder.embed_batch(batch)

        return _take(embedded(), self.chips, len)


def _timed_variant(setup: Setup, variant: str) -> dict[str, Any]:
    """Run one variant: wall, CPU and forward-pass seconds, chips, peak memory.

    ``stall_seconds`` is wall time outside the encoder's forward passes: the encoder
    waiting for batches (pipeline fill, reads that fall behind) and the glue in between.
    """
    setup.encoder.seconds = 0.0
    cpu = cpu_seconds()
    with sample_memory() as memory:
        seconds, count = timed(getattr(setup, variant))
    return {
        "seconds": seconds,
        "forward_seconds": setup.encoder.seconds,
        "stall_seconds": seconds - setup.encoder.seconds,
        "cpu_seconds": cpu_seconds() - cpu,
        "chips": count,
        "memory": memory.as_dict(),
    }


def run(
    encoder_name: str = "default",
    *,
    device: str = "cpu",
    chips: int = 128,
    batch_size: int = 64,
    num_workers: int = 2,
    overlap: float = 0.5,
    reps: int = 3,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Time the three variants ``reps`` times each, in rotating order; return medians and ratios.

    Overheads and the ratio to torchgeo are medians of per-round ratios, so that a change
    in machine load between rounds cancels out.
    """
    threads = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        return _run(encoder_name, device, chips, batch_size, num_workers, overlap, reps)
    finally:
        torch.set_num_threads(threads)


def _run(
    encoder_name: str, device: str, chips: int, batch_size: int, num_workers: int, overlap: float, reps: int
) -> dict[str, Any]:
    encoder = load_encoder(encoder_name, device)
    setup = Setup(encoder, chips, batch_size, num_workers, overlap)
    encoder.embed_batch(setup.premade[0])  # warm-up: kernel selection, allocator
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for rep in range(reps):
        turn = rep % len(VARIANTS)
        for variant in VARIANTS[turn:] + VARIANTS[:turn]:
            runs[variant].append(_timed_variant(setup, variant))
    times = {variant: median([item["seconds"] for item in items]) for variant, items in runs.items()}
    # Paired per repetition: each pipeline run against the encoder-only run of the same round.
    overheads = {
        variant: [
            (item["seconds"] - alone["seconds"]) / alone["seconds"]
            for item, alone in zip(runs[variant], runs["encoder_only"], strict=True)
        ]
        for variant in ("ours", "torchgeo")
    }
    stalls = {
        variant: median([item["stall_seconds"] / item["seconds"] for item in runs[variant]])
        for variant in ("ours", "torchgeo")
    }
    dtype = autocast_dtype(encoder.device)
    return {
        "settings": {
            "encoder": encoder.model_id,
            "device": encoder.device,
            "autocast": str(dtype).removeprefix("torch.") if dtype else "float32",
            "raster": E2E_RASTER,
            "chip_px": setup.chip_px,
            "overlap": overlap,
            "chips": chips,
            "batch_size": batch_size,
            "num_workers": num_workers,
            "torch_threads": torch.get_num_threads(),
            "reps": reps,
        },
        "median_seconds": times,
        "chips_per_s": {variant: chips / seconds for variant, seconds in times.items()},
        "overhead": median(overheads["ours"]),
        "overhead_of_medians": (times["ours"] - times["encoder_only"]) / times["encoder_only"],
        "overhead_per_rep": overheads["ours"],
        "torchgeo_overhead": median(overheads["torchgeo"]),
        "stall_share": stalls,
        "ratio_vs_torchgeo": median(
            [
                theirs["seconds"] / ours["seconds"]
                for ours, theirs in zip(runs["ours"], runs["torchgeo"], strict=True)
            ]
        ),
        "peak_total_mib": {
            variant: max(item["memory"]["peak_total_mib"] for item in items)
            for variant, items in runs.items()
        },
        "runs": runs,
    }


def report(result: dict[str, Any], out: Report) -> None:
    """Add the summary rows of one :func:`run` result to ``out``."""
    settings = result["settings"]
    section = (
        f"end to end {settings['encoder']} {settings['device']} "
        f"readers={settings['num_workers']} torch_threads={settings['torch_threads']}"
    )
    for variant in VARIANTS:
        out.add(section, variant, result["chips_per_s"][variant], "chips/s")
    out.add(section, "pipeline overhead", 100 * result["overhead"], "%", "target <= 5")
    out.add(section, "encoder idle in pipeline", 100 * result["stall_share"]["ours"], "%")
    out.add(section, "torchgeo overhead", 100 * result["torchgeo_overhead"], "%")
    out.add(section, "ratio ours/torchgeo", result["ratio_vs_torchgeo"], "x", "GPU target >= 1.5")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="default", help=f"one of {sorted(ENCODERS)} or an encoder name")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bfloat16 autocast)")
    parser.add_argument("--chips", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=None)
    args = parser.parse_args()
    out = Report()
    result = run(
        args.encoder,
        device=args.device,
        chips=args.chips,
        batch_size=args.batch_size,
        num_workers=args.workers,
        overlap=args.overlap,
        reps=args.reps,
        torch_threads=args.torch_threads,
    )
    report(result, out)
    print(out.table())


if __name__ == "__main__":
    main()
