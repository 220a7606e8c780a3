"""Small typed records passed between the library's stages.

GeoDataFrames and files are for the edges (results, sidecars); inside, stages hand each
other these dataclasses. Bounds are always ``(left, bottom, right, top)`` as in rasterio,
and every geometry travels with its CRS.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date

__all__ = ["Chip", "PixelWindow", "View", "VIEWS"]

View = str
"""A query or reference view: one of :data:`VIEWS`."""

VIEWS: tuple[View, ...] = ("satellite", "uav", "street_map", "panorama", "ground")


@dataclass(frozen=True)
class PixelWindow:
    """A window in a raster's pixel grid (offsets and sizes in source pixels)."""

    col_off: int
    row_off: int
    width: int
    height: int


@dataclass(frozen=True)
class Chip:
    """One reference chip: where it comes from and what ground it covers.

    Attributes:
        chip_id: stable id, the same on any machine for the same raster content and grid.
        source: path of the raster the chip is read from.
        source_checksum: content checksum of that raster.
        crs: the CRS of ``native_bounds`` (the raster's CRS, or EPSG:3857 for XYZ tiles),
            as an authority string when one exists, else WKT.
        native_bounds: chip bounds in ``crs``.
        wgs84_footprint_wkt: the chip footprint in EPSG:4326 (lon, lat), as WKT.
        window: the source pixels the chip is read from.
        gsd_m: ground sampling distance of the chip pixels, in metres.
        size_px: chip size in pixels (width, height) after resampling to ``gsd_m``.
        acquired: acquisition date when the raster's metadata tells it.
        tile: the XYZ tile ``(x, y, z)`` for web-mercator chips, else ``None``.
    """

    chip_id: str
    source: str
    source_checksum: str
    crs: str
    native_bounds: tuple[float, float, float, float]
    wgs84_footprint_wkt: str
    window: PixelWindow
    gsd_m: float
    size_px: tuple[int, int]
    acquired: date | None = None
    tile: tuple[int, int, int] | None = field(default=None)

    @staticmethod
    def make_id(
        source_checksum: str,
        window: PixelWindow,
        gsd_m: float,
        size_px: tuple[int, int],
        tile: tuple[int, int, int] | None = None,
    ) -> str:
        """Derive the stable chip id from the raster content and the chip's grid cell.

        ``tile`` joins the key for web-mercator chips, whose windows can repeat at a
        raster's edge; without it the id is the same as before the argument existed.
        """
        key = (
            f"{source_checksum}|{window.col_off}|{window.row_off}|{window.width}|{window.height}"
            f"|{gsd_m:.6f}|{size_px[0]}x{size_px[1]}"
        )
        if tile is not None:
            key += f"|{tile[0]}/{tile[1]}/{tile[2]}"
        return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
