"""Chips and vectors for index tests: real raster bounds cut into grids, random unit vectors."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import mercantile
import numpy as np
import rasterio
import shapely
from pyproj import Transformer

from gleam_geo.index import GeoIndex
from gleam_geo.records import Chip, PixelWindow

DIM = 32
MODEL = {"model_id": "test-encoder", "model_checksum": "0" * 64}
OTHER_MODEL = {"model_id": "other-encoder", "model_checksum": "f" * 64}
TILING = {"gsd_m": 0.5, "chip_size_px": 64, "overlap": 0.0}

# (sample raster, grid cells per side); Kampala is EPSG:3857, the Netherlands EPSG:28992.
RASTERS = (("kampala/kampala_z19.tif", 6), ("netherlands/nl_25cm.tif", 6))


def unit_vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """``n`` random L2-normalised float32 vectors."""
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _footprint(native: shapely.Polygon, crs: str) -> shapely.Polygon:
    """The WGS84 footprint of a native-CRS box, edges densified before reprojection."""
    to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    dense = shapely.segmentize(native, (native.bounds[2] - native.bounds[0]) / 8)
    return shapely.transform(dense, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])))


def raster_grid_chips(path: Path, cells: int) -> list[Chip]:
    """A ``cells`` x ``cells`` grid of chips over the real bounds of a sample raster."""
    with rasterio.open(path) as src:
        crs = src.crs.to_string()
        left, bottom, right, top = src.bounds
        width, height = src.width, src.height
    checksum = hashlib.sha256(path.name.encode()).hexdigest()  # stands in for the content checksum
    step_x, step_y = (right - left) / cells, (top - bottom) / cells
    chips = []
    for row in range(cells):
        for col in range(cells):
            bounds = (
                left + col * step_x,
                top - (row + 1) * step_y,
                left + (col + 1) * step_x,
                top - row * step_y,
            )
            footprint = _footprint(shapely.box(*bounds), crs)
            window = PixelWindow(col * width // cells, row * height // cells, width // cells, height // cells)
            centre = footprint.centroid
            tile = mercantile.tile(centre.x, centre.y, 19) if crs == "EPSG:3857" else None
            chips.append(
                Chip(
                    chip_id=Chip.make_id(checksum, window, 0.5, (64, 64)),
                    source=str(path),
                    source_checksum=checksum,
                    crs=crs,
                    native_bounds=bounds,
                    wgs84_footprint_wkt=footprint.wkt,
                    window=window,
                    gsd_m=0.5,
                    size_px=(64, 64),
                    acquired=date(2020, 5, 17) if row == 0 else None,
                    tile=None if tile is None else (tile.x, tile.y, tile.z),
                )
            )
    return chips


def sample_chips(shared_data: Path) -> list[Chip]:
    """Grid chips over the Kampala (EPSG:3857) and Netherlands (EPSG:28992) samples."""
    return [chip for name, cells in RASTERS for chip in raster_grid_chips(shared_data / name, cells)]


def synthetic_chips(n: int, prefix: str = "s", origin: tuple[float, float] = (30.0, 0.0)) -> list[Chip]:
    """``n`` chips on a lon/lat grid of 0.001 degree cells, 50 per row."""
    chips = []
    for i in range(n):
        lon, lat = origin[0] + (i % 50) * 0.001, origin[1] + (i // 50) * 0.001
        box = shapely.box(lon, lat, lon + 0.001, lat + 0.001)
        chips.append(
            Chip(
                chip_id=f"{prefix}{i:06d}",
                source=f"/data/{prefix}.tif",
                source_checksum=f"{prefix}-checksum",
                crs="EPSG:4326",
                native_bounds=box.bounds,
                wgs84_footprint_wkt=box.wkt,
                window=PixelWindow(i * 64, 0, 64, 64),
                gsd_m=0.5,
                size_px=(64, 64),
            )
        )
    return chips


def build(path: Path, chips: list[Chip], vectors: np.ndarray, factory: str = "Flat") -> GeoIndex:
    """A new index at ``path`` holding ``vectors`` for ``chips``."""
    index = GeoIndex.create(path, embed_dim=vectors.shape[1], tiling=TILING, factory=factory, **MODEL)
    index.add(vectors, chips, **MODEL)
    return index


def brute_force(stored: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    """Exact inner-product top-k with numpy, optionally among ``allowed`` ids only."""
    ids = np.arange(len(stored)) if allowed is None else np.asarray(allowed)
    scores = queries @ stored[ids].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def same_results(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether two ``(scores, ids)`` search results are identical."""
    return np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
