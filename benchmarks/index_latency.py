"""GeoIndex build time and query latency on synthetic vectors: Flat, HNSW32 and IVF-PQ.

Vectors are 256-d unit vectors drawn around 1,024 random centres, spread mostly along a
32-d subspace (clustered and of low intrinsic dimension, like real embeddings; uniform
random vectors would be an unrealistic worst case for approximate indexes), generated in
chunks from fixed seeds. Every vector gets a real :class:`~gleam_geo.records.Chip`: a small
lon/lat square on a regular grid, so region filters select a known share of the index.
Indexes are filled through :meth:`GeoIndex.add` in chunks, as ``build_index`` does, so
build times include the GeoParquet sidecar and the file writes of every commit.

Latency is measured for one query at a time and for batches of 64 (k=10), unfiltered and
restricted to a region holding 1% of the chips; recall@10 is against exact (Flat) search.
Single queries are also timed with faiss limited to one OpenMP thread.

    python benchmarks/index_latency.py --sizes 10000 1000000
"""

from __future__ import annotations

import argparse
import functools
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from common import Report, median, release_memory, sample_memory, timed

from gleam_geo.index import GeoIndex
from gleam_geo.records import Chip, PixelWindow

DIM = 256
CENTRES = 1024
SPREAD = 0.5  # norm of the spread around a centre (in a SPREAD_DIM-d subspace), before normalising
SPREAD_DIM = 32
NOISE = 0.05  # norm of the isotropic noise
CELL_DEG = 0.001  # side of a synthetic chip footprint, about 80-110 m
CHUNK = 250_000  # vectors (and chips) per GeoIndex.add call
K = 10
QUERIES = 256
BATCH = 64
MODEL = {"model_id": "synthetic", "model_checksum": "0" * 64}
TRAIN_VECTORS = 40_960  # IVF1024 wants at least 39 training vectors per list


def factories(size: int) -> dict[str, str]:
    """Benchmark label -> faiss factory string for an index of ``size`` vectors."""
    nlist = 1024 if size >= 500_000 else max(16, 2 ** round(math.log2(math.sqrt(size))))
    return {"Flat": "Flat", "HNSW32": "HNSW32", "IVF-PQ": f"IVF{nlist},PQ32"}


@functools.cache
def _structure() -> tuple[np.ndarray, np.ndarray]:
    """Fixed cluster centres (unit vectors) and an orthonormal basis of the spread around them."""
    rng = np.random.default_rng(12345)
    centres = rng.standard_normal((CENTRES, DIM), dtype=np.float32)
    basis = np.linalg.qr(rng.standard_normal((DIM, SPREAD_DIM)))[0].astype(np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True), basis


def synthetic_vectors(count: int, seed: int, start: int = 0) -> np.ndarray:
    """Vectors ``start`` to ``start + count`` of the stream ``seed`` (chunk-aligned starts only).

    Each is a centre plus a spread of norm about ``SPREAD`` in a shared ``SPREAD_DIM``-d
    subspace plus a little isotropic noise, then normalised: embeddings of real imagery
    also vary along far fewer directions than they have dimensions.
    """
    rng = np.random.default_rng([seed, start])
    centres, basis = _structure()
    spread = rng.standard_normal((count, SPREAD_DIM), dtype=np.float32) @ basis.T
    noise = rng.standard_normal((count, DIM), dtype=np.float32)
    vectors = centres[rng.integers(0, CENTRES, count)]
    vectors += spread * np.float32(SPREAD / math.sqrt(SPREAD_DIM))
    vectors += noise * np.float32(NOISE / math.sqrt(DIM))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def grid_side(size: int) -> int:
    """Chips per row of the synthetic grid (a square grid)."""
    return math.ceil(math.sqrt(size))


def synthetic_chips(start: int, count: int, side: int) -> list[Chip]:
    """Chips ``start`` to ``start + count``: ``CELL_DEG`` squares on a ``side``-wide grid at 10 E, 45 N."""
    chips = []
    checksum = "0" * 64
    for i in range(start, start + count):
        row, col = divmod(i, side)
        x0, y0 = 10.0 + col * CELL_DEG, 45.0 + row * CELL_DEG
        x1, y1 = x0 + CELL_DEG, y0 + CELL_DEG
        chips.append(
            Chip(
                chip_id=f"{i:016x}",
                source="synthetic.tif",
                source_checksum=checksum,
                crs="EPSG:4326",
                native_bounds=(x0, y0, x1, y1),
                wgs84_footprint_wkt=f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))",
                window=PixelWindow(col * 128, row * 128, 128, 128),
                gsd_m=0.6,
                size_px=(128, 128),
            )
        )
    return chips


def region_bbox(size: int) -> tuple[float, float, float, float]:
    """A lon/lat box over 10% x 10% of the grid: about 1% of the chips."""
    side = grid_side(size)
    rows = math.ceil(size / side)
    width, height = 0.1 * side * CELL_DEG, 0.1 * rows * CELL_DEG
    x0, y0 = 10.0 + 0.45 * side * CELL_DEG, 45.0 + 0.45 * rows * CELL_DEG
    # inset by a tenth of a cell so chips that only touch the box edge are left out
    inset = CELL_DEG / 10
    return (x0 + inset, y0 + inset, x0 + width - inset, y0 + height - inset)


def build(path: Path, size: int, factory: str) -> tuple[GeoIndex, dict[str, Any]]:
    """Create and fill an index in ``CHUNK``-sized adds; return it and the timings."""
    index = GeoIndex.create(
        path, embed_dim=DIM, tiling={"synthetic": True}, factory=factory, overwrite=True, **MODEL
    )
    timings: dict[str, Any] = {"train_seconds": 0.0, "add_seconds": [], "chips_seconds": 0.0}
    if "IVF" in factory and size > TRAIN_VECTORS:
        sample = synthetic_vectors(TRAIN_VECTORS, seed=7)
        timings["train_seconds"], _ = timed(lambda: index.train(sample, **MODEL))
    side = grid_side(size)
    for start in range(0, size, CHUNK):
        count = min(CHUNK, size - start)
        vectors = synthetic_vectors(count, seed=1, start=start)
        chips_seconds, chips = timed(lambda start=start, count=count: synthetic_chips(start, count, side))
        timings["chips_seconds"] += chips_seconds
        seconds, _ = timed(lambda vectors=vectors, chips=chips: index.add(vectors, chips, **MODEL))
        timings["add_seconds"].append(seconds)
        del vectors, chips
    timings["build_seconds"] = timings["train_seconds"] + sum(timings["add_seconds"])
    return index, timings


def _latency_ms(index: GeoIndex, queries: np.ndarray, batch: int, **kwargs: Any) -> dict[str, float]:
    """Milliseconds per query and per call, searching ``batch`` queries per call."""
    index.search(queries[:batch], K, **kwargs)  # warm-up
    calls = []
    for start in range(0, len(queries) - batch + 1, batch):
        begin = time.perf_counter()
        index.search(queries[start : start + batch], K, **kwargs)
        calls.append(1000 * (time.perf_counter() - begin))
    return {
        "ms_per_query": float(np.sum(calls)) / (len(calls) * batch),
        "median_ms_per_call": median(calls),
        "p95_ms_per_call": float(np.percentile(calls, 95)),
        "calls": len(calls),
    }


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(row[row >= 0]) & set(true)) for row, true in zip(found, truth, strict=True))
    return hits / truth.size


def measure(
    index: GeoIndex, queries: np.ndarray, truth: np.ndarray | None, size: int, single: int, device: str
) -> dict[str, Any]:
    """Latencies (unfiltered and region-filtered), recall against ``truth``, region set-up time."""
    bbox = region_bbox(size)
    _, found = index.search(queries, K, device=device)
    region_calls = [timed(lambda: index.region_ids(bbox)) for _ in range(5)]
    ids = region_calls[0][1]
    one = queries[:single]
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        one_thread = _latency_ms(index, one, 1, device=device)
    finally:
        faiss.omp_set_num_threads(threads)
    return {
        "batch_1": _latency_ms(index, one, 1, device=device),
        "batch_1_one_thread": one_thread,
        f"batch_{BATCH}": _latency_ms(index, queries, BATCH, device=device),
        "region_batch_1": _latency_ms(index, one[: max(2, single // 4)], 1, region=bbox),
        f"region_batch_{BATCH}": _latency_ms(index, queries[: 2 * BATCH], BATCH, region=bbox),
        "region_chips": int(ids.size),
        "region_ids_ms": 1000 * median([seconds for seconds, _ in region_calls]),
        f"recall_at_{K}": 1.0 if truth is None else _recall(found, truth),
        "ids": found,
    }


def _build_and_measure(
    path: Path,
    size: int,
    factory: str,
    queries: np.ndarray,
    truth: np.ndarray | None,
    single: int,
    device: str,
) -> dict[str, Any]:
    """Build one index, reopen it as a user would (memory-mapped), measure it, delete it."""
    index, timings = build(path, size, factory)
    index.close()
    del index  # drop the in-memory faiss index before measuring the reopened one
    open_seconds, reopened = timed(lambda: GeoIndex.open(path))
    try:
        entry = measure(reopened, queries, truth, size, single, device)
    finally:
        reopened.close()
    disk = sum(item.stat().st_size for item in path.iterdir() if item.is_file())
    shutil.rmtree(path)
    return {"factory": factory, **timings, "open_seconds": open_seconds, "disk_mib": disk / 2**20, **entry}


def run_size(size: int, labels: list[str], single: int, workdir: Path, device: str) -> dict[str, Any]:
    """Build and measure each index type at ``size`` vectors, Flat first (it gives the true neighbours)."""
    queries = synthetic_vectors(QUERIES, seed=99)
    results: dict[str, Any] = {}
    truth = None
    for label in sorted(labels, key=lambda name: name != "Flat"):
        release_memory()
        with sample_memory() as memory:
            entry = _build_and_measure(
                workdir / f"{label}-{size}", size, factories(size)[label], queries, truth, single, device
            )
        release_memory()
        if label == "Flat":
            truth = entry["ids"]
        del entry["ids"]
        results[label] = {**entry, "memory": memory.as_dict()}
    return results


def run(
    sizes: tuple[int, ...] = (10_000, 1_000_000),
    labels: tuple[str, ...] = ("Flat", "HNSW32", "IVF-PQ"),
    *,
    hnsw_max: int = 1_000_000,
    single: int = 200,
    device: str = "cpu",
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Measure every index type at every size; HNSW only up to ``hnsw_max`` vectors (slow to build).

    ``device`` is passed to :meth:`GeoIndex.search`: "cpu", or "auto" to search on the
    GPU(s) when faiss has GPU support (region searches always run on the CPU).
    """
    settings = {"dim": DIM, "k": K, "queries": QUERIES, "chunk": CHUNK, "search_device": device}
    results: dict[str, Any] = {"settings": settings}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for size in sizes:
            chosen = [label for label in labels if label != "HNSW32" or size <= hnsw_max]
            results[str(size)] = run_size(size, chosen, single, Path(tmp), device)
    return results


def report(result: dict[str, Any], out: Report) -> None:
    """Add the summary rows of one :func:`run` result to ``out``."""
    for size, entries in result.items():
        if size == "settings":
            continue
        for label, entry in entries.items():
            section = f"index {int(size):,} {label}"
            out.add(section, "build", entry["build_seconds"], "s", entry["factory"])
            out.add(section, "search batch 1", entry["batch_1"]["ms_per_query"], "ms/query")
            out.add(
                section, "search batch 1, 1 thread", entry["batch_1_one_thread"]["ms_per_query"], "ms/query"
            )
            out.add(section, f"search batch {BATCH}", entry[f"batch_{BATCH}"]["ms_per_query"], "ms/query")
            out.add(section, "region search batch 1", entry["region_batch_1"]["ms_per_query"], "ms/query")
            out.add(section, f"recall@{K}", entry[f"recall_at_{K}"], "")
            memory = entry["memory"]
            out.add(section, "RSS growth", memory["peak_total_mib"] - memory["baseline_mib"], "MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--factories", nargs="+", default=["Flat", "HNSW32", "IVF-PQ"])
    parser.add_argument("--hnsw-max", type=int, default=1_000_000, help="skip HNSW above this size")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the indexes (temporary)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to search with faiss-gpu")
    args = parser.parse_args()
    out = Report()
    result = run(
        tuple(args.sizes),
        tuple(args.factories),
        hnsw_max=args.hnsw_max,
        device="auto" if args.device.startswith("cuda") else "cpu",
        workdir=args.workdir,
    )
    report(result, out)
    print(out.table())


if __name__ == "__main__":
    main()
