"""Read chips: windowed, resampled reads in background threads, with bounded memory.

:func:`read_chip` turns one :class:`~gleam_geo.records.Chip` into an RGB uint8 image and
the fraction of it that holds data. :func:`iter_chip_batches` runs those reads (and the
encoder's preprocessing) in a small thread pool, each thread with its own rasterio
handles (they are not thread-safe), a bounded number of chips ahead of the consumer, so
the encoder does not wait on disk and memory does not grow with the raster.

Validity comes from GDAL's mask (no-data value, alpha band or mask band). A raster that
declares none is checked for black fill instead: pixels that are 0 in every band count
as no-data, as in mosaics exported without a no-data value (e.g. the Valencia sample).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..errors import RasterReadError
from ..progress import Progress, ProgressCallback
from ..records import Chip
from .catalog import RasterCatalog
from .grid import TilingConfig, chip_grid, count_chips
from .source import RasterSource, gdal_reason

__all__ = ["ChipBatch", "iter_chip_batches", "iter_chip_images", "read_chip"]

_T = TypeVar("_T")

_STRETCH_SAMPLE_PX = 512  # longest side of the decimated read used for percentile stretching
_STRETCH_PERCENTILES = (2.0, 98.0)
_OPEN_PER_THREAD = 4  # rasterio handles each reader thread keeps open (least recently used closed)

_stretch_cache: weakref.WeakKeyDictionary[RasterSource, tuple[float, float]] = weakref.WeakKeyDictionary()
_stretch_lock = threading.Lock()


@dataclass
class ChipBatch:
    """Chips and their preprocessed pixels, in the same order.

    Attributes:
        chips: the chips of the batch.
        pixels: float32 array ``(N, 3, h, w)``, one preprocessed image per chip.

    """

    chips: list[Chip]
    pixels: np.ndarray


def _resampling(window_px: float, out_px: float) -> Resampling:
    """Average when shrinking (anti-aliased), bilinear when enlarging or keeping the size."""
    return Resampling.average if window_px > out_px else Resampling.bilinear


def _read_native(dataset: DatasetReader, source: RasterSource, chip: Chip) -> tuple[np.ndarray, np.ndarray]:
    width, height = chip.size_px
    window = Window(chip.window.col_off, chip.window.row_off, chip.window.width, chip.window.height)
    boundless = (
        chip.window.col_off < 0
        or chip.window.row_off < 0
        or chip.window.col_off + chip.window.width > source.width
        or chip.window.row_off + chip.window.height > source.height
    )
    indexes = _indexes(source)
    resampling = _resampling(chip.window.width * chip.window.height, width * height)
    data = dataset.read(
        indexes,
        window=window,
        out_shape=(len(indexes), height, width),
        resampling=resampling,
        boundless=boundless,
    )
    if source.has_declared_mask or boundless:
        mask = dataset.dataset_mask(window=window, out_shape=(height, width), boundless=boundless) > 0
    else:
        mask = np.ones((height, width), dtype=bool)
    return data, mask


def _read_xyz(dataset: DatasetReader, source: RasterSource, chip: Chip) -> tuple[np.ndarray, np.ndarray]:
    width, height = chip.size_px
    indexes = _indexes(source)
    options = {} if source.has_alpha or source.nodata is not None else {"add_alpha": True}
    with WarpedVRT(
        dataset,
        crs="EPSG:3857",
        transform=from_bounds(*chip.native_bounds, width, height),
        width=width,
        height=height,
        resampling=_resampling(chip.gsd_m, source.gsd_m),
        **options,
    ) as warped:
        data = warped.read(indexes)
        mask = warped.dataset_mask() > 0
    return data, mask


def _indexes(source: RasterSource) -> list[int]:
    """List the colour bands, plus the alpha band when GDAL does not already treat it as a mask."""
    indexes = list(source.rgb_bands)
    if source.alpha_band is not None and not source.has_declared_mask:
        indexes.append(source.alpha_band)
    return indexes


def _valid(source: RasterSource, data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Refine GDAL's ``mask`` with an alpha band read as data, black fill and NaNs.

    ``data`` holds the bands from :func:`_indexes`: the colour bands, then maybe alpha.
    """
    colour = data[: len(source.rgb_bands)]
    if len(data) > len(colour):
        mask &= data[-1] > 0
    elif not source.has_declared_mask:
        mask &= (colour != 0).any(axis=0)
    if colour.dtype.kind == "f":
        mask &= np.isfinite(colour).all(axis=0)
    return mask


def _stretch(dataset: DatasetReader, source: RasterSource) -> tuple[float, float]:
    """Per-raster 2nd and 98th percentiles of the valid colour pixels, from a decimated read."""
    with _stretch_lock:
        cached = _stretch_cache.get(source)
    if cached is not None:
        return cached
    scale = min(1.0, _STRETCH_SAMPLE_PX / max(source.width, source.height))
    shape = (max(1, round(source.height * scale)), max(1, round(source.width * scale)))
    indexes = _indexes(source)
    data = dataset.read(indexes, out_shape=(len(indexes), *shape))
    if source.has_declared_mask:
        mask = dataset.dataset_mask(out_shape=shape) > 0
    else:
        mask = np.ones(shape, dtype=bool)
    values = data[: len(source.rgb_bands), _valid(source, data, mask)]
    if values.size == 0:
        low, high = 0.0, 1.0
    else:
        low, high = (float(v) for v in np.percentile(values, _STRETCH_PERCENTILES))
        high = high if high > low else low + 1.0
    with _stretch_lock:
        _stretch_cache[source] = (low, high)
    return low, high


def read_chip(dataset: DatasetReader, source: RasterSource, chip: Chip) -> tuple[np.ndarray, float]:
    """Read ``chip`` from an open ``dataset`` of ``source`` as RGB uint8 ``(h, w, 3)``.

    Native chips are read from their pixel window, resampled to ``chip.size_px``; XYZ
    chips through a warp to EPSG:3857. Three or more bands give the RGB ones (RGBN gives
    RGB), one band is replicated to grey RGB, two bands are grey plus alpha. Data that is
    not uint8 is stretched from the raster's 2nd-98th percentiles to 0-255.

    Args:
        dataset: an open rasterio dataset of ``source``, used by one thread at a time.
        source: the raster the chip belongs to.
        chip: the chip to read; it carries its own geometry and output size.

    Returns:
        The image and the fraction of its pixels that hold data (0 to 1).

    Raises:
        RasterReadError: GDAL failed to read the window.

    """
    try:
        if chip.tile is not None:
            data, mask = _read_xyz(dataset, source, chip)
        else:
            data, mask = _read_native(dataset, source, chip)
        mask = _valid(source, data, mask)
        colour = data[: len(source.rgb_bands)]
        if colour.dtype != np.uint8:
            low, high = _stretch(dataset, source)
            scaled = (np.nan_to_num(colour.astype(np.float32), nan=low) - low) * (255.0 / (high - low))
            colour = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    except RasterioError as exc:
        raise RasterReadError(
            f"cannot read raster {source.path} window {chip.window}: {gdal_reason(exc)}; "
            "check that the file is complete and GDAL can open it"
        ) from exc
    if len(colour) == 1:
        colour = np.repeat(colour, 3, axis=0)
    return np.ascontiguousarray(colour.transpose(1, 2, 0)), float(mask.mean())


class _DatasetPool:
    """Per-thread rasterio handles, a few per thread, all closed by :meth:`close`."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[DatasetReader] = set()

    def get(self, source: RasterSource) -> DatasetReader:
        cache: OrderedDict[str, DatasetReader] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        dataset = cache.get(source.path)
        if dataset is not None:
            cache.move_to_end(source.path)
            return dataset
        try:
            dataset = rasterio.open(source.path)
        except RasterioError as exc:
            raise RasterReadError(
                f"cannot read raster {source.path}: {gdal_reason(exc)}; "
                "check the path and that GDAL can open it"
            ) from exc
        cache[source.path] = dataset
        with self._lock:
            self._open.add(dataset)
        if len(cache) > _OPEN_PER_THREAD:
            _, oldest = cache.popitem(last=False)
            with self._lock:
                self._open.discard(oldest)
            oldest.close()
        return dataset

    def close(self) -> None:
        """Close every handle; call only once no thread uses the pool any more."""
        with self._lock:
            handles, self._open = self._open, set()
        for dataset in handles:
            dataset.close()


def _iter_valid(
    catalog: RasterCatalog | Iterable[RasterSource],
    config: TilingConfig,
    transform: Callable[[np.ndarray], _T],
    num_workers: int,
    prefetch: int,
    progress: ProgressCallback | None,
) -> Iterator[tuple[Chip, _T]]:
    """Yield ``(chip, transform(image))`` for the chips with enough data, in grid order.

    Chips are read ``prefetch`` ahead by ``num_workers`` threads. Progress advances once
    per chip considered, skipped or not; closing the generator cancels the reads not
    started, waits for the ones running and closes every handle.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    if prefetch < 1:
        raise ValueError(f"prefetch must be at least 1, got {prefetch}")
    sources = list(catalog)
    tracker = Progress(progress, "chipping", sum(count_chips(source, config) for source in sources))
    min_valid = 1.0 - config.max_nodata_fraction
    pool = _DatasetPool()

    def work(source: RasterSource, chip: Chip) -> _T | None:
        image, valid = read_chip(pool.get(source), source, chip)
        return transform(image) if valid >= min_valid else None

    executor = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="gleam-geo-chips")
    pending: deque[tuple[Chip, Future[_T | None]]] = deque()

    def finish_oldest() -> tuple[Chip, _T | None]:
        chip, future = pending.popleft()
        result = future.result()
        tracker.advance()
        return chip, result

    try:
        for source in sources:
            for chip in chip_grid(source, config):
                pending.append((chip, executor.submit(work, source, chip)))
                while len(pending) >= prefetch:
                    done, result = finish_oldest()
                    if result is not None:
                        yield done, result
        while pending:
            done, result = finish_oldest()
            if result is not None:
                yield done, result
    finally:
        for _, future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
        pool.close()


def iter_chip_images(
    catalog: RasterCatalog | Iterable[RasterSource],
    config: TilingConfig,
    *,
    num_workers: int = 2,
    prefetch: int = 32,
    progress: ProgressCallback | None = None,
) -> Iterator[tuple[Chip, np.ndarray]]:
    """Yield ``(chip, RGB uint8 (h, w, 3) image)`` for every chip with enough data.

    Chips whose valid fraction is below ``1 - config.max_nodata_fraction`` are skipped.
    Progress reports stage ``"chipping"``; a callback returning ``False`` raises
    :class:`~gleam_geo.errors.CancelledError`.
    """
    yield from _iter_valid(catalog, config, lambda image: image, num_workers, prefetch, progress)


def iter_chip_batches(
    catalog: RasterCatalog | Iterable[RasterSource],
    config: TilingConfig,
    preprocess: Callable[[np.ndarray], np.ndarray],
    batch_size: int = 32,
    num_workers: int = 2,
    progress: ProgressCallback | None = None,
    *,
    prefetch_batches: int = 3,
) -> Iterator[ChipBatch]:
    """Yield batches of preprocessed chips, read and preprocessed in background threads.

    Args:
        catalog: the rasters to chip.
        config: the chip grid and the no-data threshold.
        preprocess: turns an RGB uint8 ``(H, W, 3)`` chip into a float32 ``(3, h, w)`` array;
            it runs in the reader threads, so it must be thread-safe.
        batch_size: chips per batch (the last batch may be smaller).
        num_workers: reader threads.
        progress: called per chip considered (stage ``"chipping"``); returning ``False``
            raises :class:`~gleam_geo.errors.CancelledError`.
        prefetch_batches: how many batches' worth of chips are read ahead of the consumer.

    Raises:
        RasterReadError: a window could not be read. Exceptions from ``preprocess`` reach
            the caller unchanged.

    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    def prepare(image: np.ndarray) -> np.ndarray:
        pixels = np.asarray(preprocess(image), dtype=np.float32)
        if pixels.ndim != 3 or pixels.shape[0] != 3:
            raise ValueError(f"preprocess must return a (3, h, w) array, got shape {pixels.shape}")
        return pixels

    chips: list[Chip] = []
    arrays: list[np.ndarray] = []
    for chip, pixels in _iter_valid(
        catalog, config, prepare, num_workers, max(1, prefetch_batches) * batch_size, progress
    ):
        chips.append(chip)
        arrays.append(pixels)
        if len(chips) == batch_size:
            yield ChipBatch(chips, np.stack(arrays))
            chips, arrays = [], []
    if chips:
        yield ChipBatch(chips, np.stack(arrays))
