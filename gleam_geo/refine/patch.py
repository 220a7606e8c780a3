"""Reference patches: a windowed read around a candidate chip, at a chosen ground resolution.

The patch is larger than the chip (``margin`` times its side), so a query that is shifted,
rotated or larger than the chip still falls inside it, and is read from the source raster
in its own CRS, so refinement does not depend on where the chip grid happened to fall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from ..errors import RasterReadError
from ..raster import RasterSource
from ..raster.source import gdal_reason
from ..records import PixelWindow

__all__ = ["ReferencePatch", "read_patch"]

_STRETCH_PERCENTILES = (2.0, 98.0)


@dataclass
class ReferencePatch:
    """An RGB uint8 patch ``(h, w, 3)`` and its pixel-corner-to-CRS transform.

    Attributes:
        pixels: the image.
        transform: patch pixel to map CRS coordinates (the raster's CRS).
        crs: the raster's CRS string.
        metres_per_unit: true metres per CRS unit at the patch.
    """

    pixels: np.ndarray
    transform: Affine
    crs: str
    metres_per_unit: float


def read_patch(
    dataset: DatasetReader,
    source: RasterSource,
    window: PixelWindow,
    *,
    margin: float,
    gsd_m: float,
) -> ReferencePatch:
    """Read the ground around ``window`` (``margin`` times its size, same centre) at ``gsd_m``.

    The patch is clipped to the raster; it is never read finer than the raster's own pixels.

    Raises:
        RasterReadError: GDAL failed to read the window.
    """
    cx, cy = window.col_off + window.width / 2, window.row_off + window.height / 2
    half_w, half_h = window.width * margin / 2, window.height * margin / 2
    col0, row0 = max(0, math.floor(cx - half_w)), max(0, math.floor(cy - half_h))
    col1, row1 = min(source.width, math.ceil(cx + half_w)), min(source.height, math.ceil(cy + half_h))
    step = max(1.0, gsd_m / source.gsd_m)  # source pixels per patch pixel
    out_w, out_h = max(1, round((col1 - col0) / step)), max(1, round((row1 - row0) / step))
    try:
        data = dataset.read(
            list(source.rgb_bands),
            window=Window(col0, row0, col1 - col0, row1 - row0),
            out_shape=(len(source.rgb_bands), out_h, out_w),
            resampling=Resampling.average if step > 1 else Resampling.bilinear,
        )
    except RasterioError as exc:
        raise RasterReadError(
            f"cannot read raster {source.path} around window {window}: {gdal_reason(exc)}; "
            "check that the file is complete and GDAL can open it"
        ) from exc
    if data.dtype != np.uint8:
        low, high = np.percentile(data, _STRETCH_PERCENTILES)
        data = np.clip((data.astype(np.float32) - low) * (255.0 / max(high - low, 1e-6)), 0, 255)
        data = data.astype(np.uint8)
    if len(data) == 1:
        data = np.repeat(data, 3, axis=0)
    transform = (
        source.transform
        @ Affine.translation(col0, row0)
        @ Affine.scale((col1 - col0) / out_w, (row1 - row0) / out_h)
    )
    metres_per_unit = source.pixel_size_m[0] / math.hypot(source.transform.a, source.transform.d)
    return ReferencePatch(
        pixels=np.ascontiguousarray(data.transpose(1, 2, 0)),
        transform=transform,
        crs=source.crs_string,
        metres_per_unit=metres_per_unit,
    )
