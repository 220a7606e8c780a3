"""The demo: index the sample rasters, localize queries cut from them, map the results.

Each query is a crop of a sample raster at a random (seeded) place, so its true position
is known; every query is searched against all rasters at once, so the others act as
distractors. Writes the index, the queries, a GeoPackage of results and an HTML map.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from PIL import Image
from pyproj import Geod, Transformer
from rasterio.windows import Window

from .errors import GleamGeoError
from .progress import ProgressCallback
from .raster import open_raster

__all__ = ["DEMO_RASTERS", "find_sample_data", "run_demo"]

# Sample rasters at 0.07-0.35 m/px, in four CRSs (see shared/data/ATTRIBUTION.md).
DEMO_RASTERS: tuple[str, ...] = (
    "kampala/kampala_z19.tif",
    "kampala/kampala_z21_block2.tif",
    "netherlands/nl_25cm.tif",
    "oam_tcd/manila_10cm.tif",
    "oam_tcd/valencia_10cm.tif",
    "pix4d/pix4d_orthomosaic_alpha.tif",
)
QUERIES_PER_RASTER = 2
_GEOD = Geod(ellps="WGS84")


class SampleDataNotFoundError(GleamGeoError, FileNotFoundError):
    """The sample imagery folder is not where the demo looks."""


def find_sample_data(data_dir: Path | None = None, rasters: tuple[str, ...] = DEMO_RASTERS) -> Path:
    """The sample data folder: ``data_dir``, ``$GLEAM_GEO_DATA``, or ``shared/data`` beside the repo."""
    candidates = [data_dir] if data_dir else []
    if os.environ.get("GLEAM_GEO_DATA"):
        candidates.append(Path(os.environ["GLEAM_GEO_DATA"]))
    candidates += [
        Path.cwd().parent / "shared" / "data",
        Path(__file__).resolve().parents[2] / "shared" / "data",
    ]
    for candidate in candidates:
        if candidate.is_dir() and all((candidate / name).is_file() for name in rasters):
            return candidate
    raise SampleDataNotFoundError(
        f"sample rasters not found (looked in {', '.join(str(c) for c in candidates)}); "
        "set GLEAM_GEO_DATA to the shared/data folder or pass --data"
    )


@dataclass
class DemoQuery:
    """A query crop and where it truly is."""

    path: Path
    raster: str
    lon: float
    lat: float


def _cut_queries(raster: Path, ground_m: float, count: int, out_dir: Path, rng: np.random.Generator) -> list:
    """Cut ``count`` square crops of ``ground_m`` metres at random valid places of ``raster``."""
    queries = []
    pixel_m = min(open_raster(raster).pixel_size_m)  # true ground size, not CRS units
    with rasterio.open(raster) as dataset:
        size = round(ground_m / pixel_m)
        to_wgs84 = Transformer.from_crs(dataset.crs, "EPSG:4326", always_xy=True)
        for _ in range(200):
            if len(queries) == count:
                break
            col = int(rng.integers(0, max(1, dataset.width - size)))
            row = int(rng.integers(0, max(1, dataset.height - size)))
            window = Window(col, row, size, size)
            if dataset.dataset_mask(window=window).mean() < 0.98 * 255:
                continue
            pixels = dataset.read([1, 2, 3], window=window)
            name = f"{raster.stem}_q{len(queries)}.jpg"
            Image.fromarray(np.moveaxis(pixels, 0, -1)).save(out_dir / name, quality=90)
            x, y = dataset.xy(row + size / 2, col + size / 2, offset="ul")
            lon, lat = to_wgs84.transform(x, y)
            queries.append(DemoQuery(out_dir / name, raster.name, lon, lat))
    return queries


def run_demo(
    data_dir: Path | None,
    out_dir: Path,
    *,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    seed: int = 0,
    rasters: tuple[str, ...] = DEMO_RASTERS,
) -> str:
    """Run the demo and return a printable report (a table of true vs predicted positions).

    ``rasters`` are paths relative to the sample data folder.
    """
    from .api import build_index, localize
    from .io import write_results
    from .models import get_encoder

    data = find_sample_data(data_dir, rasters)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = get_encoder(device=device)
    paths = [data / name for name in rasters]
    index = build_index(paths, out_dir / "index", encoder=encoder, overwrite=True, progress=progress)

    query_dir = out_dir / "queries"
    query_dir.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    ground_m = encoder.card.gsd_m * encoder.card.chip_size_px
    queries = [q for path in paths for q in _cut_queries(path, ground_m, QUERIES_PER_RASTER, query_dir, rng)]

    frames, rows = [], []
    for query in queries:
        result = localize(query.path, index, encoder=encoder, top_k=5)
        best = result.iloc[0]
        _, _, error_m = _GEOD.inv(query.lon, query.lat, best.geometry.x, best.geometry.y)
        frames.append(result.assign(true_lon=query.lon, true_lat=query.lat, error_m=np.nan))
        frames[-1].loc[frames[-1].index[0], "error_m"] = error_m
        rows.append(
            {
                "query": query.path.name,
                "true lon, lat": f"{query.lon:.6f}, {query.lat:.6f}",
                "predicted lon, lat": f"{best.geometry.x:.6f}, {best.geometry.y:.6f}",
                "error_m": round(error_m, 1),
                "score": round(float(best.score), 3),
                "match_prob": round(float(best.match_prob), 2),
                "right raster": Path(best.source).name == query.raster,
            }
        )
    results = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")
    write_results(results, out_dir / "results.gpkg")
    _write_map(results, out_dir / "map.html")
    table = pd.DataFrame(rows)
    within = int((table["error_m"] <= ground_m / 2).sum())
    return (
        f"indexed {len(index)} chips from {len(paths)} rasters with {encoder.model_id}\n\n"
        f"{table.to_string(index=False)}\n\n"
        f"{within}/{len(table)} queries found within {ground_m / 2:.0f} m (half a chip); "
        f"median error {table['error_m'].median():.1f} m\n"
        f"results: {out_dir / 'results.gpkg'}\nmap:     {out_dir / 'map.html'}"
    )


def _write_map(results: gpd.GeoDataFrame, path: Path) -> None:
    """An HTML map of the true positions, the best candidates and their footprints."""
    import folium

    from .io.atomic import atomic_path

    best = results[results["rank"] == 1]
    center = [float(best["true_lat"].mean()), float(best["true_lon"].mean())]
    fmap = folium.Map(location=center, zoom_start=3, tiles="OpenStreetMap")
    for _, row in best.iterrows():
        truth = [row.true_lat, row.true_lon]
        guess = [row.geometry.y, row.geometry.x]
        label = f"{Path(row.query_path).name}: error {row.error_m:.1f} m, score {row.score:.3f}"
        folium.GeoJson(row.footprint.__geo_interface__, style_function=lambda _: {"color": "red"}).add_to(
            fmap
        )
        folium.CircleMarker(truth, radius=5, color="green", fill=True, tooltip="true: " + label).add_to(fmap)
        folium.CircleMarker(guess, radius=5, color="red", fill=True, tooltip="found: " + label).add_to(fmap)
        folium.PolyLine([truth, guess], color="orange").add_to(fmap)
    fmap.fit_bounds([[best.true_lat.min(), best.true_lon.min()], [best.true_lat.max(), best.true_lon.max()]])
    with atomic_path(path) as tmp:
        fmap.save(str(tmp))
