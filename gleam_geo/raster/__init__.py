"""Reference rasters: open them, lay chip grids over them and read chips.

* :mod:`~gleam_geo.raster.source`: :func:`open_raster` and :class:`RasterSource`.
* :mod:`~gleam_geo.raster.catalog`: :class:`RasterCatalog`, many rasters in many CRSs.
* :mod:`~gleam_geo.raster.grid`: :class:`TilingConfig` and :func:`chip_grid` (geometry only).
* :mod:`~gleam_geo.raster.reader`: :func:`read_chip` and the threaded :func:`iter_chip_batches`.
"""

from __future__ import annotations

from .catalog import RASTER_EXTENSIONS, RasterCatalog
from .grid import (
    MAX_UPSAMPLE,
    SCHEMES,
    TilingConfig,
    axis_offsets,
    chip_grid,
    chip_gsd_m,
    count_chips,
    xyz_zoom,
)
from .reader import ChipBatch, iter_chip_batches, iter_chip_images, read_chip
from .source import RasterSource, open_raster

__all__ = [
    "MAX_UPSAMPLE",
    "RASTER_EXTENSIONS",
    "SCHEMES",
    "ChipBatch",
    "RasterCatalog",
    "RasterSource",
    "TilingConfig",
    "axis_offsets",
    "chip_grid",
    "chip_gsd_m",
    "count_chips",
    "iter_chip_batches",
    "iter_chip_images",
    "open_raster",
    "read_chip",
    "xyz_zoom",
]
