"""Load query images from anything a user has at hand.

Paths, bytes, PIL images and numpy arrays all become an RGB uint8 ``(H, W, 3)`` array,
with EXIF orientation applied, so every later stage sees pixels the way the camera did.
A georeferenced file (a GeoTIFF, or an image with a world file) also gives its ground size
per pixel, which lets refinement search by edge layout across dates.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import CorruptImageError, GleamGeoError

__all__ = ["ImageInput", "QueryImage", "load_image"]

ImageInput = str | os.PathLike | bytes | bytearray | Image.Image | np.ndarray
"""Anything :func:`load_image` accepts."""

# Decompression-bomb guard well above any real aerial photo (about 40k x 40k pixels).
Image.MAX_IMAGE_PIXELS = 1_600_000_000


@dataclass
class QueryImage:
    """A decoded query image.

    Attributes:
        pixels: RGB uint8 array ``(H, W, 3)``, EXIF orientation applied.
        path: the file it came from, when it came from a file.
        exif_gps: ``(lon, lat)`` from EXIF GPS tags when present, else ``None``.
        gsd_m: ground metres per pixel when the file is georeferenced, else ``None``.
    """

    pixels: np.ndarray
    path: str | None = None
    exif_gps: tuple[float, float] | None = None
    gsd_m: float | None = None


def _georeferenced_gsd_m(path: str) -> float | None:
    """Ground metres per pixel of a georeferenced image file; ``None`` for a plain photo."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    from ..raster import open_raster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as dataset:
                if dataset.crs is None or dataset.transform.is_identity:
                    return None
            return open_raster(path).gsd_m
        except (RasterioIOError, GleamGeoError, ValueError):
            return None


def _gps_from_exif(image: Image.Image) -> tuple[float, float] | None:
    gps = image.getexif().get_ifd(0x8825)  # GPSInfo IFD
    try:
        lat_ref, lat, lon_ref, lon = gps[1], gps[2], gps[3], gps[4]
    except KeyError:
        return None

    def degrees(dms: tuple) -> float:
        d, m, s = (float(v) for v in dms)
        return d + m / 60.0 + s / 3600.0

    lat_deg = degrees(lat) * (-1 if str(lat_ref).upper().startswith("S") else 1)
    lon_deg = degrees(lon) * (-1 if str(lon_ref).upper().startswith("W") else 1)
    return (lon_deg, lat_deg)


def _to_rgb_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise CorruptImageError(
            f"image array has shape {array.shape}; pass an (H, W), (H, W, 3) or (H, W, 4) array"
        )
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[:, :, :3]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and float(np.nanmax(array)) <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def load_image(image: ImageInput) -> QueryImage:
    """Decode ``image`` into a :class:`QueryImage`.

    Raises:
        FileNotFoundError: the path does not exist.
        CorruptImageError: the data is not a decodable image, or is truncated.
    """
    if isinstance(image, QueryImage):
        return image
    if isinstance(image, np.ndarray):
        return QueryImage(_to_rgb_array(image))
    path: str | None = None
    if isinstance(image, (str, os.PathLike)):
        path = str(Path(image).expanduser())
        if not Path(path).is_file():
            raise FileNotFoundError(f"query image {path} not found; check the path")
        source: str | io.BytesIO | None = path
    elif isinstance(image, (bytes, bytearray)):
        source = io.BytesIO(bytes(image))
    elif isinstance(image, Image.Image):
        source = None
    else:
        raise CorruptImageError(
            f"cannot read a query image from {type(image).__name__}; pass a path, bytes, PIL image or array"
        )
    name = path or "image bytes"
    try:
        pil = image if isinstance(image, Image.Image) else Image.open(source)
        pil.load()
        gps = _gps_from_exif(pil)
        pil = ImageOps.exif_transpose(pil)
        rgb = pil.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptImageError(
            f"cannot decode {name} ({reason}); the file is corrupt, truncated or not an image"
        ) from None
    gsd_m = _georeferenced_gsd_m(path) if path is not None else None
    return QueryImage(np.asarray(rgb), path=path, exif_gps=gps, gsd_m=gsd_m)
