"""A reference floor: plain windowed rasterio reads in threads, no chip records, no checks.

Reads the same native grid as ours (same windows, same bands), normalises each window
to float32 CHW with the same arithmetic, and stacks batches. It shows what a data path
costs with nothing but the reads and the arithmetic, so it bounds what ours can reach.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from gleam_geo.raster import RasterSource, TilingConfig, axis_offsets


def _windows(source: RasterSource, config: TilingConfig) -> list[Window]:
    """The native grid's windows, row by row (the same offsets as :func:`gleam_geo.raster.chip_grid`)."""
    ground_m = config.chip_size_px * config.gsd_m
    width = max(1, round(ground_m / source.pixel_size_m[0]))
    height = max(1, round(ground_m / source.pixel_size_m[1]))
    cols = axis_offsets(source.width, width, max(1, round(width * (1 - config.overlap))))
    rows = axis_offsets(source.height, height, max(1, round(height * (1 - config.overlap))))
    return [Window(col, row, width, height) for row in rows for col in cols]


def iter_batches(
    source: RasterSource,
    config: TilingConfig,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    num_workers: int,
) -> Iterator[np.ndarray]:
    """Yield float32 NCHW batches: threads read windows (one handle each) and normalise them."""
    local = threading.local()
    handles: list[rasterio.DatasetReader] = []
    lock = threading.Lock()
    size = (config.chip_size_px, config.chip_size_px)
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).reshape(-1, 1, 1)
    offset = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).reshape(-1, 1, 1)
    bands = list(source.rgb_bands)

    def read(window: Window) -> np.ndarray:
        if not hasattr(local, "dataset"):
            local.dataset = rasterio.open(Path(source.path))
            with lock:
                handles.append(local.dataset)
        chip = local.dataset.read(bands, window=window, out_shape=(len(bands), *size))
        pixels = chip.astype(np.float32)
        pixels *= scale
        pixels -= offset
        return pixels

    windows = _windows(source, config)
    try:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            for start in range(0, len(windows), batch_size):
                yield np.stack(list(pool.map(read, windows[start : start + batch_size])))
    finally:
        for handle in handles:
            handle.close()
