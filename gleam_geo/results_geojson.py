"""Localization results for hosts: GeoJSON for the worker protocol, PNGs of matched chips.

A results GeoDataFrame (columns in :mod:`gleam_geo.schema`) becomes a GeoJSON
FeatureCollection in WGS84 (lon, lat), as RFC 7946 requires: the point estimate is the
feature geometry, the ``footprint`` polygon a GeoJSON geometry among the properties, and
every other column a JSON-safe property (numpy scalars unwrapped, NaN and NaT as null).
:func:`chip_png` writes a PNG of the reference chip a result matched, for viewers that
show the query photo beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

__all__ = ["chip_png", "json_safe", "render_chip", "results_to_feature_collection"]


def json_safe(value: Any) -> Any:
    """Turn ``value`` into something ``json.dumps(allow_nan=False)`` accepts.

    numpy scalars and arrays become Python numbers and lists, NaN/NaT/NA become ``None``,
    dates become ISO 8601 strings; mappings and sequences are converted item by item.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if _is_missing(value):
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy scalar or array
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    return str(value)


def _is_missing(value: Any) -> bool:
    """Whether ``value`` is a scalar NaN, NaT or NA."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas comes with geopandas
        return isinstance(value, float) and math.isnan(value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # arrays and odd objects are not missing scalars
        return False


def results_to_feature_collection(
    results: gpd.GeoDataFrame, extra: Mapping[str, Sequence[Any]] | None = None
) -> dict[str, Any]:
    """Convert ``results`` to a GeoJSON FeatureCollection in EPSG:4326.

    Args:
        results: a ``localize()`` result (point ``geometry``, optional ``footprint``).
        extra: more properties, one value per row (e.g. ``chip_image_path``).

    Returns:
        ``{"type": "FeatureCollection", "features": [...]}``; each feature's properties
        hold every column but the geometries, plus ``footprint`` as a GeoJSON geometry.

    """
    import geopandas as gpd
    import shapely.geometry

    frame = results
    if frame.crs is not None and not frame.crs.equals("EPSG:4326"):
        frame = frame.to_crs("EPSG:4326")
    secondary = [
        name
        for name in frame.columns
        if name != frame.geometry.name and isinstance(frame[name], gpd.GeoSeries)
    ]
    for name in secondary:
        series = frame[name]
        if series.crs is not None and not series.crs.equals("EPSG:4326"):
            frame = frame.assign(**{name: series.to_crs("EPSG:4326")})
    plain = [name for name in frame.columns if name != frame.geometry.name and name not in secondary]
    features = []
    for row_number, (_, row) in enumerate(frame.iterrows()):
        properties = {name: json_safe(row[name]) for name in plain}
        for name in secondary:
            geometry = row[name]
            properties[name] = None if geometry is None else json_safe(shapely.geometry.mapping(geometry))
        for name, values in (extra or {}).items():
            properties[name] = json_safe(values[row_number])
        point = row[frame.geometry.name]
        features.append(
            {
                "type": "Feature",
                "geometry": None if point is None else json_safe(shapely.geometry.mapping(point)),
                "properties": properties,
            }
        )
    return {"type": "FeatureCollection", "features": features}


def chip_png(row: Any, crs: Any, chip_dir: Path, size_px: int, written: list[Path]) -> str | None:
    """Write a PNG of the chip a result row matched, once per chip id; return its path.

    Args:
        row: a ``localize()`` result row (``chip_id``, ``source``, ``footprint``).
        crs: the CRS of the row's ``footprint``.
        chip_dir: folder for the PNGs, named ``<chip_id>.png``.
        size_px: side of the PNG.
        written: collects the files this call created, so a failed request can remove them.

    """
    footprint = row.get("footprint")
    source = row.get("source")
    if footprint is None or not source:
        return None
    name = "".join(char for char in str(row["chip_id"]) if char.isalnum() or char in "-_") or "chip"
    path = chip_dir / f"{name}.png"
    if not path.is_file():
        render_chip(source, footprint.bounds, crs, path, size_px)
        written.append(path)
    return str(path.resolve())


def render_chip(
    source: str, bounds: tuple[float, float, float, float], crs: Any, path: Path, size_px: int = 256
) -> Path:
    """Read ``bounds`` (in ``crs``) from raster ``source`` into an RGB PNG at ``path``."""
    import numpy as np
    import rasterio
    from PIL import Image
    from rasterio.enums import Resampling
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window, from_bounds

    from .errors import RasterReadError
    from .io import atomic_path

    try:
        with rasterio.open(source) as dataset:
            native = transform_bounds(crs, dataset.crs, *bounds, densify_pts=21) if crs else bounds
            window = from_bounds(*native, transform=dataset.transform)
            window = window.intersection(Window(0, 0, dataset.width, dataset.height))
            bands = [1, 2, 3] if dataset.count >= 3 else [1, 1, 1]
            data = dataset.read(
                bands, window=window, out_shape=(3, size_px, size_px), resampling=Resampling.bilinear
            )
    except rasterio.errors.RasterioError as exc:
        message = " ".join(str(exc).split())
        raise RasterReadError(f"cannot read the matched chip from {source}: {message}") from None
    if data.dtype != np.uint8:
        low, high = np.percentile(data, (2, 98))
        data = np.clip((data.astype(np.float32) - low) / max(float(high - low), 1e-6) * 255, 0, 255)
    pixels = np.ascontiguousarray(np.moveaxis(data.astype(np.uint8), 0, -1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels, "RGB").save(tmp, format="PNG")
    return path
