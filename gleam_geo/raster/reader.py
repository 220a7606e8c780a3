"""Read chips: windowed, resampled reads in background threads, with bounded memory.

:func:`read_chip` turns one :class:`~gleam_geo.records.Chip` into an RGB uint8 image and
the fraction of it that holds data. :func:`iter_chip_batches` runs those reads (and the
encoder's preprocessing) in a small thread pool, each thread with its own rasterio
handles (they are not thread-safe) reading runs of neighbouring chips (one strip read
when they need no horizontal resampling), a bounded number of chips ahead of the
consumer, so the encoder does not wait on disk and memory does not grow with the raster.

Validity comes from GDAL's mask (no-data value, alpha band or mask band). A raster that
declares none is checked for black fill instead: pixels that are 0 in every band count
as no-data, as in mosaics exported without a no-data value (e.g. the Valencia sample).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import cv2
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
from ..records import Chip, PixelWindow
from .catalog import RasterCatalog
from .grid import TilingConfig, chip_grid, count_chips
from .source import RasterSource, gdal_reason

__all__ = ["ChipBatch", "iter_chip_batches", "iter_chip_images", "read_chip"]

_T = TypeVar("_T")

_STRETCH_SAMPLE_PX = 512  # longest side of the decimated read used for percentile stretching
_STRETCH_PERCENTILES = (2.0, 98.0)
_OPEN_PER_THREAD = 4  # rasterio handles each reader thread keeps open (least recently used closed)
_RUN_CHIPS = 8  # most neighbouring chips a reader thread reads in one go

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


def _boundless(source: RasterSource, window: PixelWindow) -> bool:
    return (
        window.col_off < 0
        or window.row_off < 0
        or window.col_off + window.width > source.width
        or window.row_off + window.height > source.height
    )


def _read_native(
    dataset: DatasetReader, source: RasterSource, window: PixelWindow, width: int, height: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``window`` resampled to ``width`` x ``height``: the bands of :func:`_indexes` and GDAL's mask.

    The mask is ``None`` where GDAL declares none and the window lies inside the raster.
    """
    gdal_window = Window(window.col_off, window.row_off, window.width, window.height)
    boundless = _boundless(source, window)
    indexes = _indexes(source)
    data = dataset.read(
        indexes,
        window=gdal_window,
        out_shape=(len(indexes), height, width),
        resampling=_resampling(window.width * window.height, width * height),
        boundless=boundless,
    )
    if source.has_declared_mask or boundless:
        mask = dataset.dataset_mask(window=gdal_window, out_shape=(height, width), boundless=boundless)
        return data, mask > 0
    return data, None


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


def _valid(source: RasterSource, data: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
    """Refine GDAL's ``mask`` with an alpha band read as data, black fill and NaNs.

    ``data`` holds the bands from :func:`_indexes`: the colour bands, then maybe alpha.
    ``mask`` is ``None`` where GDAL was not asked (every pixel valid); ``None`` comes back
    when no check applies either.
    """
    colour = data[: len(source.rgb_bands)]
    checks = [] if mask is None else [mask]
    if len(data) > len(colour):
        checks.append(data[-1] > 0)
    elif not source.has_declared_mask:
        # Black fill: 0 in every band. One OR over the bands is cheaper than a compare per band.
        if colour.dtype.kind in "ui":
            checks.append(np.bitwise_or.reduce(colour, axis=0) != 0)
        else:
            checks.append((colour != 0).any(axis=0))
    if colour.dtype.kind == "f":
        checks.append(np.isfinite(colour).all(axis=0))
    if not checks:
        return None
    valid = checks[0]
    for check in checks[1:]:
        valid = valid & check
    return valid


def _valid_fraction(mask: np.ndarray | None) -> float:
    """Share of valid pixels in ``mask`` (``None``: all valid)."""
    return 1.0 if mask is None else np.count_nonzero(mask) / mask.size


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
    mask = dataset.dataset_mask(out_shape=shape) > 0 if source.has_declared_mask else None
    valid = _valid(source, data, mask)
    colour = data[: len(source.rgb_bands)]
    values = colour.reshape(len(colour), -1) if valid is None else colour[:, valid]
    if values.size == 0:
        low, high = 0.0, 1.0
    else:
        low, high = (float(v) for v in np.percentile(values, _STRETCH_PERCENTILES))
        high = high if high > low else low + 1.0
    with _stretch_lock:
        _stretch_cache[source] = (low, high)
    return low, high


def _read_error(source: RasterSource, window: PixelWindow, exc: RasterioError) -> RasterReadError:
    return RasterReadError(
        f"cannot read raster {source.path} window {window}: {gdal_reason(exc)}; "
        "check that the file is complete and GDAL can open it"
    )


def _colour(
    dataset: DatasetReader, source: RasterSource, data: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, float]:
    """RGB uint8 planes ``(3, h, w)`` and the valid fraction of one chip's bands and mask."""
    valid = _valid_fraction(_valid(source, data, mask))
    colour = data[: len(source.rgb_bands)]
    if colour.dtype != np.uint8:
        low, high = _stretch(dataset, source)
        scaled = (np.nan_to_num(colour.astype(np.float32), nan=low) - low) * (255.0 / (high - low))
        colour = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if len(colour) == 1:
        colour = np.repeat(colour, 3, axis=0)
    return colour, valid


def _read_colour(dataset: DatasetReader, source: RasterSource, chip: Chip) -> tuple[np.ndarray, float]:
    """Read ``chip`` as RGB uint8 planes ``(3, h, w)`` and its valid fraction (see :func:`read_chip`)."""
    try:
        if chip.tile is not None:
            data, mask = _read_xyz(dataset, source, chip)
        else:
            data, mask = _read_native(dataset, source, chip.window, *chip.size_px)
        return _colour(dataset, source, data, mask)
    except RasterioError as exc:
        raise _read_error(source, chip.window, exc) from exc


def _shares_strip(source: RasterSource, chips: Sequence[Chip]) -> bool:
    """Whether ``chips`` are native chips of one grid row kept at their width (no horizontal resampling).

    Then one read of the window spanning them, resampled only vertically, holds each of
    them exactly: GDAL maps every output column to the same source column either way.
    """
    first = chips[0].window
    return len(chips) > 1 and all(
        chip.tile is None
        and chip.window.row_off == first.row_off
        and chip.window.height == first.height
        and chip.window.width == chip.size_px[0] == chips[0].size_px[0]
        and chip.size_px[1] == chips[0].size_px[1]
        and not _boundless(source, chip.window)
        for chip in chips
    )


def _read_run(
    dataset: DatasetReader, source: RasterSource, chips: Sequence[Chip]
) -> list[tuple[np.ndarray, float]]:
    """Read neighbouring chips of one grid row: one strip read when :func:`_shares_strip`, else chip by chip.

    A strip read decodes and copies the pixels the chips overlap on once instead of once
    per chip, and resamples them once. Each chip's planes are a view into the strip.
    """
    if not _shares_strip(source, chips):
        return [_read_colour(dataset, source, chip) for chip in chips]
    first = chips[0].window
    span = PixelWindow(
        first.col_off, first.row_off, chips[-1].window.col_off + first.width - first.col_off, first.height
    )
    try:
        data, mask = _read_native(dataset, source, span, span.width, chips[0].size_px[1])
        read = []
        for chip in chips:
            cols = slice(chip.window.col_off - span.col_off, chip.window.col_off - span.col_off + first.width)
            read.append(_colour(dataset, source, data[:, :, cols], None if mask is None else mask[:, cols]))
        return read
    except RasterioError as exc:
        raise _read_error(source, span, exc) from exc


def _to_hwc(planes: np.ndarray) -> np.ndarray:
    """Interleave ``(3, h, w)`` planes into a contiguous ``(h, w, 3)`` image (cv2.merge: no strided copy)."""
    return cv2.merge(list(planes))


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
    planes, valid = _read_colour(dataset, source, chip)
    return _to_hwc(planes), valid


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


def _runs(chips: Iterable[Chip], size: int) -> Iterator[list[Chip]]:
    """Group consecutive chips of one grid row (same window rows) into runs of at most ``size``."""
    run: list[Chip] = []
    for chip in chips:
        if run and (
            len(run) == size
            or chip.window.row_off != run[0].window.row_off
            or chip.window.height != run[0].window.height
        ):
            yield run
            run = []
        run.append(chip)
    if run:
        yield run


def _yield_cpu() -> None:
    """Lower the calling thread's CPU priority to the lowest (Linux: per-thread nice 19).

    Reader threads that feed a CPU-bound consumer then run only on cycles it leaves idle,
    instead of preempting its OpenMP threads (which stalls a whole parallel region).
    Where per-thread priorities are unavailable this does nothing.
    """
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _iter_valid(
    catalog: RasterCatalog | Iterable[RasterSource],
    config: TilingConfig,
    transform: Callable[[np.ndarray], _T],
    num_workers: int,
    prefetch: int,
    progress: ProgressCallback | None,
    yield_cpu: bool = False,
) -> Iterator[tuple[Chip, _T]]:
    """Yield ``(chip, transform(planes))`` for the chips with enough data, in grid order.

    ``planes`` are a chip's RGB uint8 ``(3, h, w)`` planes; they may be a view into a
    strip shared with neighbouring chips, so ``transform`` must copy what it keeps.

    Each thread reads a run of neighbouring chips at a time (see :func:`_read_run`), at
    most ``prefetch`` chips ahead. Progress advances once per chip considered, skipped or
    not; closing the generator cancels the reads not started, waits for the ones running
    and closes every handle.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    if prefetch < 1:
        raise ValueError(f"prefetch must be at least 1, got {prefetch}")
    sources = list(catalog)
    tracker = Progress(progress, "chipping", sum(count_chips(source, config) for source in sources))
    min_valid = 1.0 - config.max_nodata_fraction
    # Runs short enough that every thread has two queued within the prefetch window.
    run_size = max(1, min(_RUN_CHIPS, prefetch // (2 * num_workers)))
    pool = _DatasetPool()

    def work(source: RasterSource, run: list[Chip]) -> list[_T | None]:
        return [
            transform(planes) if valid >= min_valid else None
            for planes, valid in _read_run(pool.get(source), source, run)
        ]

    executor = ThreadPoolExecutor(
        max_workers=num_workers,
        thread_name_prefix="gleam-geo-chips",
        initializer=_yield_cpu if yield_cpu else None,
    )
    pending: deque[tuple[list[Chip], Future[list[_T | None]]]] = deque()
    in_flight = 0

    def finish_oldest() -> Iterator[tuple[Chip, _T]]:
        nonlocal in_flight
        run, future = pending.popleft()
        in_flight -= len(run)
        for chip, result in zip(run, future.result(), strict=True):
            tracker.advance()
            if result is not None:
                yield chip, result

    try:
        for source in sources:
            for run in _runs(chip_grid(source, config), run_size):
                pending.append((run, executor.submit(work, source, run)))
                in_flight += len(run)
                while in_flight >= prefetch:
                    yield from finish_oldest()
        while pending:
            yield from finish_oldest()
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
    yield from _iter_valid(catalog, config, _to_hwc, num_workers, prefetch, progress)


def iter_chip_batches(
    catalog: RasterCatalog | Iterable[RasterSource],
    config: TilingConfig,
    preprocess: Callable[[np.ndarray], np.ndarray],
    batch_size: int = 32,
    num_workers: int = 2,
    progress: ProgressCallback | None = None,
    *,
    prefetch_batches: int = 3,
    yield_cpu: bool = False,
) -> Iterator[ChipBatch]:
    """Yield batches of preprocessed chips, read and preprocessed in background threads.

    Args:
        catalog: the rasters to chip.
        config: the chip grid and the no-data threshold.
        preprocess: turns an RGB uint8 ``(H, W, 3)`` chip into a float32 ``(3, h, w)`` array;
            it runs in the reader threads, so it must be thread-safe. The chip is a
            channels-last view of the planes read, not C-contiguous (``image.transpose(2, 0, 1)``
            gives the planes back without a copy), read-only, and may share memory with
            other chips.
        batch_size: chips per batch (the last batch may be smaller).
        num_workers: reader threads.
        progress: called per chip considered (stage ``"chipping"``); returning ``False``
            raises :class:`~gleam_geo.errors.CancelledError`.
        prefetch_batches: how many batches' worth of chips are read ahead of the consumer.
        yield_cpu: run the reader threads at the lowest CPU priority, for a consumer that
            needs every core (an encoder on the CPU): reads then fill its idle moments
            instead of slowing it down.

    Raises:
        RasterReadError: a window could not be read. Exceptions from ``preprocess`` reach
            the caller unchanged.

    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    def prepare(planes: np.ndarray) -> np.ndarray:
        image = planes.transpose(1, 2, 0)
        image.flags.writeable = False
        pixels = np.asarray(preprocess(image), dtype=np.float32)
        if pixels.ndim != 3 or pixels.shape[0] != 3:
            raise ValueError(f"preprocess must return a (3, h, w) array, got shape {pixels.shape}")
        return pixels

    chips: list[Chip] = []
    arrays: list[np.ndarray] = []
    for chip, pixels in _iter_valid(
        catalog, config, prepare, num_workers, max(1, prefetch_batches) * batch_size, progress, yield_cpu
    ):
        chips.append(chip)
        arrays.append(pixels)
        if len(chips) == batch_size:
            yield ChipBatch(chips, np.stack(arrays))
            chips, arrays = [], []
    if chips:
        yield ChipBatch(chips, np.stack(arrays))
