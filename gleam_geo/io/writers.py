"""Write localization results to GeoPackage, GeoJSON, GeoParquet or CSV.

The format follows the file extension. Writes are atomic: an existing output is replaced
only once the new file is complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd

from .atomic import atomic_path

__all__ = ["FORMATS", "write_results"]

FORMATS: dict[str, str] = {
    ".gpkg": "GPKG",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".parquet": "Parquet",
    ".geoparquet": "Parquet",
    ".csv": "CSV",
}


def _flatten(results: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Turn secondary geometry columns into WKT text, for formats with one geometry per row."""
    flat = results.copy()
    for name in flat.columns:
        if name != flat.geometry.name and isinstance(flat[name], gpd.GeoSeries):
            flat[f"{name}_wkt"] = flat[name].to_wkt(rounding_precision=-1)
            flat = flat.drop(columns=name)
    return flat


def write_results(results: gpd.GeoDataFrame, path: str | os.PathLike[str], layer: str | None = None) -> Path:
    """Write ``results`` to ``path`` in the format its extension names; returns the path.

    GeoParquet keeps the ``footprint`` polygons as a second geometry column; GeoPackage,
    GeoJSON and CSV store them as ``footprint_wkt`` text. CSV also gets ``lon``/``lat``
    (or ``x``/``y`` for projected results) columns for the point.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"cannot write results to {path.name}: unknown extension; use one of {', '.join(sorted(FORMATS))}"
        )
    with atomic_path(path) as tmp:
        if FORMATS[suffix] == "Parquet":
            results.to_parquet(tmp, index=False)
        elif FORMATS[suffix] == "CSV":
            flat = _flatten(results)
            x, y = ("lon", "lat") if flat.crs is None or flat.crs.is_geographic else ("x", "y")
            table = flat.drop(columns=flat.geometry.name).assign(**{x: flat.geometry.x, y: flat.geometry.y})
            table["crs"] = flat.crs.to_string() if flat.crs is not None else ""
            table.to_csv(tmp, index=False)
        else:
            _flatten(results).to_file(tmp, driver=FORMATS[suffix], layer=layer or "gleam_localizations")
    return path
