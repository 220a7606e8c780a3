"""One georeferenced raster on disk, opened once, checked, and described.

:func:`open_raster` reads only the header and two blocks (to catch truncated files early),
never the whole raster. A :class:`RasterSource` holds what the grid and the reader need:
the CRS, the geotransform, the ground sampling distance in true metres, the WGS84
footprint, the acquisition date and a lazily computed content checksum.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
import warnings
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError, ProjError
from rasterio.coords import BoundingBox
from rasterio.crs import CRS as RasterioCRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader

from ..errors import NotGeoreferencedError, RasterReadError, UnknownCRSError

__all__ = ["RasterSource", "open_raster", "gdal_reason"]

_GEOD = Geod(ellps="WGS84")
_HASH_BLOCK = 1 << 20
_HASH_DIGEST_BYTES = 32
_EDGE_POINTS = 21  # points per edge when a footprint is densified before reprojection
_GSD_PROBE_PX = 8  # half the pixel span measured geodesically at the centre for gsd_m

# Metadata keys that name an acquisition time, looked up before the TIFF creation time.
_ACQUISITION_KEY = re.compile(r"ACQUI|CAPTURE|SENSING", re.IGNORECASE)
_METADATA_DATE = re.compile(r"(?<!\d)(\d{4})[-:/]?(\d{2})[-:/]?(\d{2})(?!\d)")
_FILENAME_DATE = re.compile(r"(?<!\d)(\d{4})(-?)(\d{2})\2(\d{2})(?!\d)")

_GEOREFERENCE_FIX = "assign a CRS and geotransform with gdal_edit.py -a_srs/-a_ullr or the QGIS Georeferencer"


def gdal_reason(exc: BaseException) -> str:
    """Return the most specific message in an exception chain, on one line.

    rasterio often raises "Read failed. See previous exception for details." with the
    GDAL error as its cause; the cause is what a user can act on.
    """
    messages: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(messages) < 8:
        text = " ".join(str(current).split())
        if text and "see previous exception" not in text.lower():
            messages.append(text)
        current = current.__cause__ or current.__context__
    return messages[-1] if messages else type(exc).__name__


def _read_error(path: str, reason: str) -> RasterReadError:
    return RasterReadError(f"cannot read raster {path}: {reason}; check the path and that GDAL can open it")


def _blake2b_file(path: str) -> hashlib.blake2b:
    digest = hashlib.blake2b(digest_size=_HASH_DIGEST_BYTES)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest


def _file_checksum(path: str, seen: frozenset[str] = frozenset()) -> str:
    """blake2b of a file's bytes; for a VRT, of its text plus its sources' checksums."""
    with open(path, "rb") as stream:
        is_vrt = stream.read(64).lstrip().startswith(b"<VRTDataset")
    if not is_vrt:
        return _blake2b_file(path).hexdigest()
    text = Path(path).read_bytes()
    digest = hashlib.blake2b(text, digest_size=_HASH_DIGEST_BYTES)
    seen = seen | {os.path.realpath(path)}
    for referenced in _vrt_sources(path, text):
        digest.update(b"\0" + referenced.encode())
        if os.path.isfile(referenced) and os.path.realpath(referenced) not in seen:
            digest.update(_file_checksum(referenced, seen).encode())
    return digest.hexdigest()


def _vrt_sources(path: str, text: bytes) -> list[str]:
    """List the files a VRT references, resolved against the VRT's folder, in order, once each."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise _read_error(path, f"invalid VRT XML ({exc})") from exc
    found: list[str] = []
    for element in root.iter():
        if element.tag not in ("SourceFilename", "SourceDataset") or not (element.text or "").strip():
            continue
        name = element.text.strip()
        if element.get("relativeToVRT") == "1" or (
            element.tag == "SourceDataset" and not os.path.isabs(name) and not name.startswith("/vsi")
        ):
            name = os.path.join(os.path.dirname(path), name)
        if name not in found:
            found.append(name)
    return found


def _parse_date(
    match: re.Match[str] | None, year_group: int, month_group: int, day_group: int
) -> date | None:
    if match is None:
        return None
    try:
        parsed = date(int(match[year_group]), int(match[month_group]), int(match[day_group]))
    except ValueError:
        return None
    return parsed if 1900 <= parsed.year <= date.today().year + 1 else None


def _acquisition_date(path: str, dataset: DatasetReader) -> date | None:
    """Acquisition date from metadata (acquisition keys, then TIFFTAG_DATETIME), else the filename."""
    tags: dict[str, str] = {}
    for namespace in (None, "IMAGERY"):
        try:
            tags.update(dataset.tags(ns=namespace) if namespace else dataset.tags())
        except RasterioError:
            continue
    ordered = [value for key, value in tags.items() if _ACQUISITION_KEY.search(key)]
    ordered += [value for key, value in tags.items() if key.upper() == "TIFFTAG_DATETIME"]
    for value in ordered:
        parsed = _parse_date(_METADATA_DATE.search(value), 1, 2, 3)
        if parsed is not None:
            return parsed
    for match in reversed(list(_FILENAME_DATE.finditer(Path(path).name))):
        parsed = _parse_date(match, 1, 3, 4)
        if parsed is not None:
            return parsed
    return None


class RasterSource:
    """A georeferenced raster: its grid, CRS, footprint and content checksum.

    Build one with :func:`open_raster`; it holds no open file handle, so it can be shared
    between threads (each reader thread opens its own rasterio dataset).

    Attributes:
        path: absolute path of the raster.
        crs: the raster's CRS.
        crs_string: ``"AUTHORITY:CODE"`` when the CRS has one, else its WKT.
        transform: the affine geotransform (pixel corner to CRS coordinates).
        width, height, count: raster size in pixels and number of bands.
        dtype: the pixel data type name (``"uint8"``, ``"uint16"``...).
        nodata: the declared no-data value, or ``None``.
        has_alpha: whether a band is an alpha band (or the raster is grey plus alpha).
        bounds: ``(left, bottom, right, top)`` in the raster's CRS.
        wgs84_bounds: ``(west, south, east, north)`` in degrees.
        wgs84_footprint: the raster outline in EPSG:4326 (lon, lat), densified.
        pixel_size_m: true ground size of one pixel ``(x, y)`` in metres at the centre.
        gsd_m: ground sampling distance in metres (mean of ``pixel_size_m``).
        acquired: acquisition date from metadata or the filename, else ``None``.
        rgb_bands: band indexes read as RGB (three, or one grey band).
        alpha_band: the band index used as alpha, or ``None``.
        has_declared_mask: whether GDAL reports a no-data value, alpha or mask band.

    """

    def __init__(self, path: str, dataset: DatasetReader) -> None:
        self.path = path
        self.driver: str = dataset.driver
        self.crs: RasterioCRS = dataset.crs
        self.transform: Affine = dataset.transform
        self.width: int = dataset.width
        self.height: int = dataset.height
        self.count: int = dataset.count
        self.dtype: str = dataset.dtypes[0]
        self.nodata: float | None = dataset.nodata
        self.bounds: BoundingBox = dataset.bounds
        self.acquired: date | None = _acquisition_date(path, dataset)
        self.crs_string: str = _crs_string(self.crs)
        self.rgb_bands, self.alpha_band = _band_roles(dataset)
        self.has_alpha: bool = self.alpha_band is not None
        self.has_declared_mask: bool = any(
            flags != [MaskFlags.all_valid] for flags in dataset.mask_flag_enums[: max(1, self.count)]
        )
        pyproj_crs = _pyproj_crs(path, self.crs)
        try:
            to_wgs84 = Transformer.from_crs(pyproj_crs, "EPSG:4326", always_xy=True)
        except ProjError as exc:
            raise UnknownCRSError(
                f"raster {path} has a CRS that PROJ cannot relate to longitude/latitude "
                f"({_short_crs(self.crs)}); assign its real CRS with gdal_edit.py -a_srs EPSG:<code>"
            ) from exc
        self.wgs84_footprint: shapely.Polygon = _footprint(path, self, to_wgs84)
        self.wgs84_bounds: tuple[float, float, float, float] = tuple(self.wgs84_footprint.bounds)
        self.pixel_size_m: tuple[float, float] = _pixel_size_m(path, self, to_wgs84)
        self.gsd_m: float = (self.pixel_size_m[0] + self.pixel_size_m[1]) / 2
        self._checksum: str | None = None
        self._checksum_lock = threading.Lock()

    @property
    def checksum(self) -> str:
        """blake2b (256-bit, hex) of the file's bytes, computed on first use and cached.

        For a VRT it covers the VRT text plus the checksums of the files it references,
        so editing a source tile changes the VRT's checksum too.
        """
        with self._checksum_lock:
            if self._checksum is None:
                try:
                    self._checksum = _file_checksum(self.path)
                except OSError as exc:
                    raise _read_error(self.path, exc.strerror or str(exc)) from exc
            return self._checksum

    def __repr__(self) -> str:
        crs = self.crs_string if len(self.crs_string) < 40 else "custom CRS"
        return (
            f"RasterSource({self.path!r}, {crs}, {self.width}x{self.height}x{self.count} {self.dtype}, "
            f"{self.gsd_m:.3f} m/px)"
        )


def _crs_string(crs: RasterioCRS) -> str:
    authority = crs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else crs.to_wkt()


def _short_crs(crs: RasterioCRS) -> str:
    wkt = crs.to_wkt()
    return wkt if len(wkt) <= 80 else wkt[:77] + "..."


def _pyproj_crs(path: str, crs: RasterioCRS) -> CRS:
    try:
        return CRS.from_wkt(crs.to_wkt())
    except CRSError as exc:
        raise UnknownCRSError(
            f"raster {path} has a CRS that PROJ does not understand ({_short_crs(crs)}); "
            "assign a known one with gdal_edit.py -a_srs EPSG:<code>"
        ) from exc


def _band_roles(dataset: DatasetReader) -> tuple[tuple[int, ...], int | None]:
    """Which bands are read as RGB (or grey) and which one, if any, is alpha."""
    interp = dataset.colorinterp
    alpha = next((i + 1 for i, ci in enumerate(interp) if ci == ColorInterp.alpha), None)
    if dataset.count == 2 and alpha is None:
        alpha = 2  # grey + alpha, whatever the colour interpretation says
    colour = [i + 1 for i in range(dataset.count) if i + 1 != alpha]
    by_role = {ci: i + 1 for i, ci in enumerate(interp)}
    if all(role in by_role for role in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return (by_role[ColorInterp.red], by_role[ColorInterp.green], by_role[ColorInterp.blue]), alpha
    return (tuple(colour[:3]) if len(colour) >= 3 else (colour[0],)), alpha


def _pixel_to_crs(transform: Affine, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b, c, d, e, f = transform[:6]
    return a * cols + b * rows + c, d * cols + e * rows + f


def _pixel_ring(col_off: float, row_off: float, width: float, height: float, points: int) -> np.ndarray:
    """Return the closed outline of a pixel rectangle with ``points`` per edge, as ``(2, 4 * points + 1)``."""
    t = np.linspace(0.0, 1.0, points, endpoint=False)
    cols = np.concatenate([t * width, np.full(points, width), (1 - t) * width, np.zeros(points)])
    rows = np.concatenate([np.zeros(points), t * height, np.full(points, height), (1 - t) * height])
    ring = np.stack([cols + col_off, rows + row_off])
    return np.concatenate([ring, ring[:, :1]], axis=1)


def _footprint(path: str, source: RasterSource, to_wgs84: Transformer) -> shapely.Polygon:
    cols, rows = _pixel_ring(0, 0, source.width, source.height, _EDGE_POINTS)
    lon, lat = to_wgs84.transform(*_pixel_to_crs(source.transform, cols, rows))
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise NotGeoreferencedError(
            f"raster {path} does not map to longitude/latitude under {_short_crs(source.crs)}; "
            "its CRS or geotransform is wrong: fix it with gdal_edit.py -a_srs/-a_ullr"
        )
    polygon = shapely.Polygon(np.column_stack([lon, lat]))
    return polygon if polygon.is_valid else shapely.make_valid(polygon).convex_hull


def _pixel_size_m(path: str, source: RasterSource, to_wgs84: Transformer) -> tuple[float, float]:
    """Measure the true ground size of a pixel at the raster centre, measured along rows and columns.

    Geodesic, so it is right for geographic CRSs and for projections whose scale drifts
    from their linear unit (Mercator away from the equator), and follows a rotated grid.
    """
    cx, cy, k = source.width / 2, source.height / 2, _GSD_PROBE_PX
    cols = np.array([cx - k, cx + k, cx, cx])
    rows = np.array([cy, cy, cy - k, cy + k])
    lon, lat = to_wgs84.transform(*_pixel_to_crs(source.transform, cols, rows))
    _, _, dist = _GEOD.inv(lon[[0, 2]], lat[[0, 2]], lon[[1, 3]], lat[[1, 3]])
    size_x, size_y = (float(d) / (2 * k) for d in dist)
    if not (math.isfinite(size_x) and math.isfinite(size_y) and size_x > 0 and size_y > 0):
        raise NotGeoreferencedError(
            f"raster {path} has a degenerate pixel size under {_short_crs(source.crs)}; "
            "fix its geotransform with gdal_edit.py -a_ullr"
        )
    return size_x, size_y


def _check_readable(path: str, dataset: DatasetReader) -> None:
    """Read the first and last block of band 1: a truncated file fails here, not mid-run."""
    if dataset.count == 0:
        raise _read_error(path, "the raster has no bands")
    block_rows, block_cols = dataset.block_shapes[0]
    last = (math.ceil(dataset.height / block_rows) - 1, math.ceil(dataset.width / block_cols) - 1)
    for row, col in {(0, 0), last}:
        dataset.read(1, window=dataset.block_window(1, row, col))


def open_raster(path: str | os.PathLike[str]) -> RasterSource:
    """Open a GDAL raster (GeoTIFF, COG, VRT, JPEG2000...), check it and describe it.

    Raises:
        RasterReadError: the file is missing, unreadable, truncated or not a raster.
        NotGeoreferencedError: it has no CRS or no geotransform.
        UnknownCRSError: its CRS is one PROJ cannot use.

    """
    absolute = os.path.abspath(os.fspath(path))
    if not os.path.exists(absolute) and not absolute.startswith("/vsi"):
        raise _read_error(absolute, "no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(absolute) as dataset:
                if dataset.crs is None or dataset.transform.is_identity:
                    missing = "no CRS" if dataset.crs is None else "no geotransform"
                    if dataset.gcps[0]:
                        missing += " (only ground control points)"
                    raise NotGeoreferencedError(f"raster {absolute} has {missing}; {_GEOREFERENCE_FIX}")
                _check_readable(absolute, dataset)
                return RasterSource(absolute, dataset)
    except RasterioError as exc:
        raise _read_error(absolute, gdal_reason(exc)) from exc
