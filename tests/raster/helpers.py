"""Helpers for the raster tests: sample raster names and a writer for synthetic rasters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.transform import from_origin

SAMPLES = {
    "kampala": "kampala/kampala_z19.tif",  # EPSG:3857, 768x512, 0.30 m
    "naip": "naip_nd/naip_m_4709963_se_14_1_20090818.tif",  # EPSG:26914, RGBN, 5 m, nodata 0
    "valencia": "oam_tcd/valencia_10cm.tif",  # EPSG:3395, black fill without a no-data value
    "netherlands": "netherlands/nl_25cm.tif",  # EPSG:28992, 0.25 m
    "pix4d": "pix4d/pix4d_orthomosaic_alpha.tif",  # EPSG:32750, RGBA
    "colorado": "usgs/colorado_15cm.tif",  # EPSG:26913, 383x232
}

UTM_ORIGIN = from_origin(500_000.0, 4_500_000.0, 0.5, 0.5)


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    transform: Affine | None = UTM_ORIGIN,
    tags: dict[str, str] | None = None,
    **profile,
) -> Path:
    """Write ``data`` (bands, rows, cols) as a raster; ``crs``/``transform`` None to omit them."""
    options = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype,
        **profile,
    }
    if crs is not None:
        options["crs"] = crs
    if transform is not None:
        options["transform"] = transform
    with rasterio.open(path, "w", **options) as dataset:
        dataset.write(data)
        if tags:
            dataset.update_tags(**tags)
    return path
