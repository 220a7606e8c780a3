"""Chip grids: where the reference chips of a raster lie, without reading any pixels.

Two schemes:

* ``"native"``: square windows in the raster's own pixel grid, ``chip_size_px * gsd_m``
  metres on a side, neighbours sharing ``overlap`` of a chip. No reprojection, so no
  resampling artefacts beyond the change of scale.
* ``"xyz"``: the web-mercator (EPSG:3857) tiles at one zoom that overlap the raster,
  each read through a warp to EPSG:3857. Tiles do not overlap; ``overlap`` is unused.
  A tile's window is the box of source pixels under it, clipped to the raster.

``gsd_m`` is true ground metres (see :attr:`RasterSource.pixel_size_m`), so a chip covers
``chip_size_px * gsd_m`` metres on the ground even in Mercator far from the equator. A
raster more than :data:`MAX_UPSAMPLE` times coarser than ``gsd_m`` is chipped at that
fraction of its own pixel size instead (:func:`chip_gsd_m`): upsampling a 5 m raster to
0.3 m would make ~280 times more chips that hold no more detail.

Edge chips (native): along each axis chips start every ``stride`` pixels; when the last
one stops short of the raster edge, one more chip is added flush with the edge (it
overlaps its neighbour by more than ``overlap``), so every pixel is covered and no chip
hangs outside. A raster narrower than one chip gets a single chip centred on it along
that axis if it spans at least half a chip, and none otherwise; such a chip extends past
the raster (negative window offsets) and its outside counts as no-data when read.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import Any

import mercantile
import numpy as np
import shapely
from pyproj import Transformer

from ..records import Chip, PixelWindow
from .source import _EDGE_POINTS, RasterSource, _pixel_ring, _pixel_to_crs

__all__ = [
    "MAX_UPSAMPLE",
    "SCHEMES",
    "TilingConfig",
    "axis_offsets",
    "chip_grid",
    "chip_gsd_m",
    "count_chips",
    "xyz_zoom",
]

SCHEMES: tuple[str, ...] = ("native", "xyz")

_EARTH_CIRCUMFERENCE_M = 2 * math.pi * 6378137.0
_MAX_ZOOM = 28
_MAX_MERCATOR_LAT = 85.0511287798
_FOOTPRINT_EDGE_POINTS = 8
_WKT_DIGITS = 9
# A tile must overlap the raster by more than this share of its area (not just touch it).
_MIN_TILE_SHARE = 1e-6
_SNAP_PX = 1e-6


@dataclass(frozen=True)
class TilingConfig:
    """How rasters are cut into reference chips; stored in index manifests.

    Attributes:
        gsd_m: target ground sampling distance of the chips, metres per pixel; a raster
            coarser than ``MAX_UPSAMPLE * gsd_m`` gets chips at ``1 / MAX_UPSAMPLE`` of its
            own pixel size (:func:`chip_gsd_m`).
        chip_size_px: chip side in pixels after resampling to ``gsd_m``.
        overlap: fraction (0 to <1) of a chip's side shared with each neighbour (native).
        scheme: ``"native"`` (raster CRS windows) or ``"xyz"`` (web-mercator tiles).
        zoom: XYZ zoom level; ``None`` picks the one whose chips come closest to ``gsd_m``.
        max_nodata_fraction: chips with more no-data than this are skipped when read.

    """

    gsd_m: float
    chip_size_px: int
    overlap: float = 0.5
    scheme: str = "native"
    zoom: int | None = None
    max_nodata_fraction: float = 0.5

    def __post_init__(self) -> None:
        def number(name: str, value: Any, kind: type) -> Any:
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ValueError(f"TilingConfig.{name} must be a number, got {value!r}")
            return value

        gsd = float(number("gsd_m", self.gsd_m, Real))
        if not (math.isfinite(gsd) and gsd > 0):
            raise ValueError(f"TilingConfig.gsd_m must be a positive number of metres, got {self.gsd_m!r}")
        size = int(number("chip_size_px", self.chip_size_px, Integral))
        if size < 1:
            raise ValueError(f"TilingConfig.chip_size_px must be at least 1, got {self.chip_size_px!r}")
        overlap = float(number("overlap", self.overlap, Real))
        if not 0 <= overlap < 1:
            raise ValueError(f"TilingConfig.overlap must be in [0, 1), got {self.overlap!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"TilingConfig.scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        zoom = self.zoom
        if zoom is not None:
            if self.scheme != "xyz":
                raise ValueError("TilingConfig.zoom only applies to scheme='xyz'; leave it None for 'native'")
            zoom = int(number("zoom", zoom, Integral))
            if not 0 <= zoom <= _MAX_ZOOM:
                raise ValueError(f"TilingConfig.zoom must be in [0, {_MAX_ZOOM}], got {self.zoom!r}")
        nodata = float(number("max_nodata_fraction", self.max_nodata_fraction, Real))
        if not 0 <= nodata <= 1:
            raise ValueError(
                f"TilingConfig.max_nodata_fraction must be in [0, 1], got {self.max_nodata_fraction!r}"
            )
        for name, value in (
            ("gsd_m", gsd),
            ("chip_size_px", size),
            ("overlap", overlap),
            ("zoom", zoom),
            ("max_nodata_fraction", nodata),
        ):
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, the inverse of :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TilingConfig:
        """Rebuild a config from :meth:`to_dict` output (e.g. an index manifest)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TilingConfig keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)


MAX_UPSAMPLE = 2.0
"""Chips are never finer than the raster's own pixels over this factor."""


def chip_gsd_m(source: RasterSource, config: TilingConfig) -> float:
    """Ground metres per chip pixel for ``source``: ``config.gsd_m``, or coarser for coarse rasters."""
    return max(config.gsd_m, source.gsd_m / MAX_UPSAMPLE)


@functools.lru_cache(maxsize=16)
def _transformer(source_crs: str, target_crs: str) -> Transformer:
    """A cached ``always_xy`` transformer: building one can take 0.1 s (e.g. EPSG:28992 to WGS84).

    pyproj transformers are thread-safe, so one can be shared.
    """
    return Transformer.from_crs(source_crs, target_crs, always_xy=True)


def axis_offsets(raster_px: int, chip_px: int, stride_px: int) -> list[int]:
    """Chip start offsets along one axis of ``raster_px`` pixels (see the module docstring).

    Chips start every ``stride_px``; a last chip flush with the far edge is added when the
    regular ones stop short. A raster shorter than a chip gets one centred chip if it is
    at least half a chip long, else none.
    """
    if raster_px >= chip_px:
        offsets = list(range(0, raster_px - chip_px + 1, stride_px))
        if offsets[-1] + chip_px < raster_px:
            offsets.append(raster_px - chip_px)
        return offsets
    if 2 * raster_px >= chip_px:
        return [-((chip_px - raster_px) // 2)]
    return []


def _native_layout(source: RasterSource, config: TilingConfig) -> tuple[int, int, list[int], list[int]]:
    """Window size in source pixels and the column and row offsets of the native grid."""
    ground_m = config.chip_size_px * chip_gsd_m(source, config)
    width_px = max(1, round(ground_m / source.pixel_size_m[0]))
    height_px = max(1, round(ground_m / source.pixel_size_m[1]))
    stride_x = max(1, round(width_px * (1 - config.overlap)))
    stride_y = max(1, round(height_px * (1 - config.overlap)))
    cols = axis_offsets(source.width, width_px, stride_x)
    rows = axis_offsets(source.height, height_px, stride_y)
    return width_px, height_px, cols, rows


def xyz_zoom(source: RasterSource, config: TilingConfig) -> int:
    """Return the XYZ zoom: ``config.zoom``, else the one whose chips come closest to :func:`chip_gsd_m`."""
    if config.zoom is not None:
        return config.zoom
    lat = (source.wgs84_bounds[1] + source.wgs84_bounds[3]) / 2
    span_m = _EARTH_CIRCUMFERENCE_M * math.cos(math.radians(lat))
    zoom = round(math.log2(span_m / (config.chip_size_px * chip_gsd_m(source, config))))
    return min(max(zoom, 0), _MAX_ZOOM)


def _xyz_tiles(source: RasterSource, config: TilingConfig) -> list[mercantile.Tile]:
    """Tiles at the zoom whose area overlaps the raster footprint (touching is not enough)."""
    zoom = xyz_zoom(source, config)
    west, south, east, north = source.wgs84_bounds
    south, north = max(south, -_MAX_MERCATOR_LAT), min(north, _MAX_MERCATOR_LAT)
    if south >= north:
        return []
    candidates = list(mercantile.tiles(west, south, east, north, zooms=zoom))
    if not candidates:
        return []
    to_mercator = _transformer(source.crs_string, "EPSG:3857")
    cols, rows = _pixel_ring(0, 0, source.width, source.height, _EDGE_POINTS)
    footprint = shapely.Polygon(
        np.column_stack(to_mercator.transform(*_pixel_to_crs(source.transform, cols, rows)))
    )
    if not footprint.is_valid:
        footprint = shapely.make_valid(footprint)
    boxes = shapely.box(*np.array([mercantile.xy_bounds(tile) for tile in candidates]).T)
    share = shapely.area(shapely.intersection(boxes, footprint)) / shapely.area(boxes)
    return [tile for tile, tile_share in zip(candidates, share, strict=True) if tile_share > _MIN_TILE_SHARE]


def count_chips(source: RasterSource, config: TilingConfig) -> int:
    """How many chips :func:`chip_grid` yields for ``source`` (before no-data skipping); cheap."""
    if config.scheme == "xyz":
        return len(_xyz_tiles(source, config))
    _, _, cols, rows = _native_layout(source, config)
    return len(cols) * len(rows)


def chip_grid(source: RasterSource, config: TilingConfig) -> Iterator[Chip]:
    """Yield the chips of ``source`` row by row, top-left first; geometry only, no pixel reads."""
    if config.scheme == "xyz":
        yield from _xyz_grid(source, config)
    else:
        yield from _native_grid(source, config)


def _wkt(lon: np.ndarray, lat: np.ndarray) -> str:
    return shapely.to_wkt(shapely.Polygon(np.column_stack([lon, lat])), rounding_precision=_WKT_DIGITS)


def _native_grid(source: RasterSource, config: TilingConfig) -> Iterator[Chip]:
    width_px, height_px, cols, rows = _native_layout(source, config)
    if not cols or not rows:
        return
    to_wgs84 = _transformer(source.crs_string, "EPSG:4326")
    ring_cols, ring_rows = _pixel_ring(0, 0, width_px, height_px, _FOOTPRINT_EDGE_POINTS)
    corners = np.array([0, _FOOTPRINT_EDGE_POINTS, 2 * _FOOTPRINT_EDGE_POINTS, 3 * _FOOTPRINT_EDGE_POINTS])
    size_px = (config.chip_size_px, config.chip_size_px)
    gsd_m = chip_gsd_m(source, config)
    checksum = source.checksum
    col_offs = np.asarray(cols, dtype=float)[:, None]
    for row_off in rows:
        # One row of chips at a time: one (chips, ring points) transform, one WKT call.
        x, y = _pixel_to_crs(source.transform, ring_cols + col_offs, ring_rows + row_off)
        lon, lat = to_wgs84.transform(x, y)
        footprints = shapely.to_wkt(
            shapely.polygons(np.stack([lon, lat], axis=-1)), rounding_precision=_WKT_DIGITS
        )
        left, right = x[:, corners].min(axis=1), x[:, corners].max(axis=1)
        bottom, top = y[:, corners].min(axis=1), y[:, corners].max(axis=1)
        for i, col_off in enumerate(cols):
            window = PixelWindow(col_off, row_off, width_px, height_px)
            yield Chip(
                chip_id=Chip.make_id(checksum, window, gsd_m, size_px),
                source=source.path,
                source_checksum=checksum,
                crs=source.crs_string,
                native_bounds=(float(left[i]), float(bottom[i]), float(right[i]), float(top[i])),
                wgs84_footprint_wkt=str(footprints[i]),
                window=window,
                gsd_m=gsd_m,
                size_px=size_px,
                acquired=source.acquired,
            )


def _covering_window(cols: np.ndarray, rows: np.ndarray, width: int, height: int) -> PixelWindow:
    """Smallest whole-pixel window holding the points, clipped to the raster.

    Coordinates within ``_SNAP_PX`` of a pixel edge snap to it, so a tile whose edge
    lies on a pixel edge (up to float noise) does not grow by a pixel.
    """
    col_off = min(max(math.floor(cols.min() + _SNAP_PX), 0), width)
    row_off = min(max(math.floor(rows.min() + _SNAP_PX), 0), height)
    col_end = min(max(math.ceil(cols.max() - _SNAP_PX), 0), width)
    row_end = min(max(math.ceil(rows.max() - _SNAP_PX), 0), height)
    return PixelWindow(col_off, row_off, col_end - col_off, row_end - row_off)


def _xyz_grid(source: RasterSource, config: TilingConfig) -> Iterator[Chip]:
    tiles = _xyz_tiles(source, config)
    if not tiles:
        return
    to_source = _transformer("EPSG:3857", source.crs_string)
    inverse = ~source.transform
    ring = _pixel_ring(0, 0, 1, 1, _EDGE_POINTS)
    size_px = (config.chip_size_px, config.chip_size_px)
    checksum = source.checksum
    for tile in tiles:
        left, bottom, right, top = mercantile.xy_bounds(tile)
        west, south, east, north = mercantile.bounds(tile)
        x, y = to_source.transform(left + ring[0] * (right - left), top - ring[1] * (top - bottom))
        cols, rows = _pixel_to_crs(inverse, np.asarray(x), np.asarray(y))
        window = _covering_window(cols, rows, source.width, source.height)
        gsd_m = (right - left) * math.cos(math.radians((south + north) / 2)) / config.chip_size_px
        xyz = (tile.x, tile.y, tile.z)
        yield Chip(
            chip_id=Chip.make_id(checksum, window, gsd_m, size_px, tile=xyz),
            source=source.path,
            source_checksum=checksum,
            crs="EPSG:3857",
            native_bounds=(left, bottom, right, top),
            wgs84_footprint_wkt=_wkt(
                np.array([west, east, east, west, west]), np.array([north, north, south, south, north])
            ),
            window=window,
            gsd_m=gsd_m,
            size_px=size_px,
            acquired=source.acquired,
            tile=xyz,
        )
