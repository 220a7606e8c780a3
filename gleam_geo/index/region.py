"""Search regions: turn what a user calls a region into one WGS84 geometry, and find its chips.

A region may be a shapely geometry with its CRS, a lon/lat bbox, a GeoDataFrame or a
GeoSeries. Chips are selected when their WGS84 footprint intersects the region: a
vectorised bbox test on the sidecar's bbox columns, then exact shapely tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.geometry.base import BaseGeometry

from ..errors import UnknownCRSError
from .sidecar import Sidecar

__all__ = ["RegionLike", "ids_in_region", "parse_crs", "to_wgs84_geometry"]

RegionLike = BaseGeometry | Sequence[float] | gpd.GeoDataFrame | gpd.GeoSeries
"""A shapely geometry, a lon/lat bbox ``(minx, miny, maxx, maxy)``, a GeoDataFrame or a GeoSeries."""

_WGS84 = CRS.from_epsg(4326)

_SEGMENTS_PER_SIDE = 64
"""Edges are densified to this many pieces per bbox side before reprojection, so that
straight edges in a projected CRS stay close to their true, curved, lon/lat shape."""


def parse_crs(crs: Any) -> CRS:
    """Parse anything pyproj understands (``"EPSG:32636"``, 3857, WKT, PROJ string, CRS).

    Raises:
        UnknownCRSError: PROJ does not know ``crs``.

    """
    try:
        return CRS.from_user_input(crs)
    except CRSError:
        raise UnknownCRSError(
            f"unknown CRS {crs!r}: PROJ does not know it; "
            "pass an EPSG code such as 'EPSG:32636', WKT or a PROJ string"
        ) from None


def to_wgs84_geometry(region: RegionLike, crs: Any = None) -> BaseGeometry:
    """Turn a region into one shapely geometry in EPSG:4326 (x = longitude, y = latitude).

    Args:
        region: a shapely geometry (in ``crs``, or lon/lat when ``crs`` is None), a bbox
            ``(minx, miny, maxx, maxy)`` (lon/lat, or in ``crs`` when given), or a
            GeoDataFrame/GeoSeries (the union of its geometries, in its own CRS).
        crs: CRS of a geometry or bbox region; for GeoDataFrames only used when they have none.

    Raises:
        UnknownCRSError: ``crs`` is not a CRS PROJ knows.
        ValueError: an empty region, lon/lat values out of range, or a frame without CRS.
        TypeError: ``region`` is none of the accepted kinds.

    """
    if isinstance(region, (gpd.GeoDataFrame, gpd.GeoSeries)):
        return _frame_to_wgs84(region, crs)
    if isinstance(region, BaseGeometry):
        if region.is_empty:
            raise ValueError("the region geometry is empty; pass a polygon that covers the search area")
        if crs is None:
            return _checked_lonlat(_valid(region))
        return _reproject(_valid(region), parse_crs(crs))
    if (
        isinstance(region, (Sequence, np.ndarray))
        and not isinstance(region, (str, bytes))
        and len(region) == 4
    ):
        minx, miny, maxx, maxy = (float(v) for v in region)
        if not (minx <= maxx and miny <= maxy):
            raise ValueError(
                f"bbox {tuple(region)} has min > max; give (minx, miny, maxx, maxy), west/south first"
            )
        box = shapely.box(minx, miny, maxx, maxy)
        return _checked_lonlat(box) if crs is None else _reproject(box, parse_crs(crs))
    raise TypeError(
        f"cannot use a {type(region).__name__} as a region; pass a shapely geometry with crs, "
        "a lon/lat bbox (minx, miny, maxx, maxy), a GeoDataFrame or a GeoSeries"
    )


def ids_in_region(sidecar: Sidecar, region: BaseGeometry) -> np.ndarray:
    """Sorted ids of the chips whose WGS84 footprint intersects ``region`` (EPSG:4326)."""
    candidates = sidecar.bbox_candidates(region.bounds)
    if candidates.size == 0:
        return candidates
    wkb = sidecar.read_rows(candidates, ["geometry"]).column(0).to_numpy(zero_copy_only=False)
    prepared = shapely.from_wkb(shapely.to_wkb(region))  # a private copy to prepare
    shapely.prepare(prepared)
    return candidates[shapely.intersects(prepared, shapely.from_wkb(wkb))]


def _frame_to_wgs84(frame: gpd.GeoDataFrame | gpd.GeoSeries, crs: Any) -> BaseGeometry:
    series = frame.geometry if isinstance(frame, gpd.GeoDataFrame) else frame
    if series.crs is None and crs is None:
        raise ValueError(
            "the region GeoDataFrame/GeoSeries has no CRS; set it with .set_crs(...) or pass crs="
        )
    source = parse_crs(series.crs if series.crs is not None else crs)
    geometries = series.dropna()
    geometries = geometries[~geometries.is_empty]
    if len(geometries) == 0:
        raise ValueError(
            "the region GeoDataFrame/GeoSeries holds no geometry; pass one that covers the search area"
        )
    return _reproject(_valid(shapely.union_all(shapely.make_valid(geometries.to_numpy()))), source)


def _valid(geometry: BaseGeometry) -> BaseGeometry:
    return geometry if geometry.is_valid else shapely.make_valid(geometry)


def _checked_lonlat(geometry: BaseGeometry) -> BaseGeometry:
    minx, miny, maxx, maxy = geometry.bounds
    if not (minx >= -180.0 and maxx <= 180.0 and miny >= -90.0 and maxy <= 90.0):
        raise ValueError(
            f"region bounds {geometry.bounds} are not lon/lat (lon in [-180, 180], lat in [-90, 90]); "
            "pass crs= for projected coordinates"
        )
    return geometry


def _reproject(geometry: BaseGeometry, source: CRS) -> BaseGeometry:
    """Reproject ``geometry`` from ``source`` to EPSG:4326, densifying edges first."""
    if source.equals(_WGS84, ignore_axis_order=True):
        return _checked_lonlat(geometry)
    minx, miny, maxx, maxy = geometry.bounds
    step = max(maxx - minx, maxy - miny) / _SEGMENTS_PER_SIDE
    if step > 0:
        geometry = shapely.segmentize(geometry, step)
    transformer = Transformer.from_crs(source, _WGS84, always_xy=True)

    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    result = shapely.transform(geometry, to_lonlat)
    if not np.all(np.isfinite(shapely.get_coordinates(result))):
        raise ValueError(
            f"the region cannot be reprojected from {source.to_string()} to lon/lat "
            "(outside the area of the CRS); "
            "check the region's coordinates and CRS"
        )
    return _checked_lonlat(_valid(result))
