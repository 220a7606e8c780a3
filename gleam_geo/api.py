"""The library's front door: ``build_index`` and ``localize``.

``localize(image, region)`` embeds the query with the shared encoder, searches the chips
of the region in a :class:`~gleam_geo.index.GeoIndex`, and returns ranked, georeferenced
candidates as a GeoDataFrame (columns in :mod:`gleam_geo.schema`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer

from .errors import GleamGeoError, ModelMismatchError, UnknownEncoderError
from .index import GeoIndex, to_wgs84_geometry
from .io.images import ImageInput, load_image
from .models import Encoder, get_encoder
from .progress import ProgressCallback
from .raster import RasterCatalog, TilingConfig
from .records import VIEWS, View
from .schema import CORE_COLUMNS, REFINE_COLUMNS, column_names

if TYPE_CHECKING:
    from .explain import Explainer
    from .refine import Refinement, Refiner

__all__ = ["add_to_index", "build_index", "cached_index", "default_cache_dir", "localize", "resolve_modality"]

PathLike = str | os.PathLike
RasterPaths = PathLike | Sequence[PathLike]

# Flush embeddings to the index every this many chips, so memory stays bounded.
_FLUSH_CHIPS = 50_000


def default_cache_dir() -> Path:
    """Where on-the-fly indexes are cached: ``$GLEAM_GEO_CACHE`` or ``~/.cache/gleam_geo``."""
    return Path(os.environ.get("GLEAM_GEO_CACHE", Path.home() / ".cache" / "gleam_geo"))


def _resolve_encoder(encoder: Encoder | str | None, device: str | None = None) -> Encoder:
    if encoder is None or isinstance(encoder, str):
        return get_encoder(encoder, device=device)
    return encoder


def _default_tiling(encoder: Encoder, tiling: TilingConfig | dict | None) -> TilingConfig:
    if isinstance(tiling, TilingConfig):
        return tiling
    params: dict[str, Any] = {"gsd_m": encoder.card.gsd_m, "chip_size_px": encoder.card.chip_size_px}
    params.update(tiling or {})
    return TilingConfig(**params)


def add_to_index(
    index: GeoIndex,
    rasters: RasterPaths | RasterCatalog,
    encoder: Encoder | str | None = None,
    *,
    batch_size: int | None = None,
    num_workers: int = 2,
    progress: ProgressCallback | None = None,
) -> GeoIndex:
    """Chip, embed and add ``rasters`` to ``index``; rasters already in it are skipped.

    The encoder must be the one the index was built with (else :class:`ModelMismatchError`).
    """
    from .embedding import embed_chips
    from .models.device import default_batch_size

    encoder = _encoder_for_index(index, encoder)
    index.check_model(encoder.model_id, encoder.checksum)
    catalog = rasters if isinstance(rasters, RasterCatalog) else RasterCatalog.from_paths(_as_list(rasters))
    indexed = {source["checksum"] for source in index.manifest.get("sources", [])}
    todo = RasterCatalog([source for source in catalog if source.checksum not in indexed])
    if len(todo) == 0:
        return index
    tiling = TilingConfig.from_dict(index.manifest["tiling"])
    if batch_size is None:
        batch_size = default_batch_size(encoder.device, max(encoder.card.input_size("satellite")))
    pending_chips: list = []
    pending_vectors: list[np.ndarray] = []
    for chips, vectors in embed_chips(
        todo, encoder, tiling, batch_size=batch_size, num_workers=num_workers, progress=progress
    ):
        pending_chips.extend(chips)
        pending_vectors.append(vectors)
        if len(pending_chips) >= _FLUSH_CHIPS:
            index.add(
                np.concatenate(pending_vectors),
                pending_chips,
                model_id=encoder.model_id,
                model_checksum=encoder.checksum,
            )
            pending_chips, pending_vectors = [], []
    if pending_chips:
        index.add(
            np.concatenate(pending_vectors),
            pending_chips,
            model_id=encoder.model_id,
            model_checksum=encoder.checksum,
        )
    return index


def build_index(
    rasters: RasterPaths | RasterCatalog,
    out_dir: PathLike,
    *,
    encoder: Encoder | str | None = None,
    tiling: TilingConfig | dict | None = None,
    factory: str = "Flat",
    overwrite: bool = False,
    batch_size: int | None = None,
    num_workers: int = 2,
    device: str | None = None,
    progress: ProgressCallback | None = None,
) -> GeoIndex:
    """Tile ``rasters`` into chips, embed them and store them in a new index at ``out_dir``.

    Args:
        rasters: raster paths, folders or globs (any GDAL raster, any CRS), or a catalog.
        out_dir: the index directory to create.
        encoder: an encoder, a registered name or a checkpoint path; default: the offline default.
        tiling: chip GSD, size, overlap and scheme; defaults come from the encoder's card.
        factory: FAISS factory string: "Flat" (exact) for small indexes, e.g. "IVF4096,PQ32"
            or "HNSW32" for large ones.
        overwrite: replace an existing index at ``out_dir``.
        batch_size: chips per encoder batch; default depends on the device.
        num_workers: reader threads.
        device: "cpu", "cuda", "mps" or None for automatic.
        progress: progress callback (see :mod:`gleam_geo.progress`).
    """
    encoder = _resolve_encoder(encoder, device)
    config = _default_tiling(encoder, tiling)
    catalog = rasters if isinstance(rasters, RasterCatalog) else RasterCatalog.from_paths(_as_list(rasters))
    index = GeoIndex.create(
        out_dir,
        model_id=encoder.model_id,
        model_checksum=encoder.checksum,
        embed_dim=encoder.embed_dim,
        tiling=config.to_dict(),
        factory=factory,
        overwrite=overwrite,
    )
    return add_to_index(
        index, catalog, encoder, batch_size=batch_size, num_workers=num_workers, progress=progress
    )


def _as_list(value: Any) -> list:
    if isinstance(value, (str, os.PathLike)):
        return [value]
    return list(value)


def _encoder_for_index(index: GeoIndex, encoder: Encoder | str | None, device: str | None = None) -> Encoder:
    """The encoder to use with ``index``: the given one, else the one named in its manifest."""
    if encoder is not None:
        return _resolve_encoder(encoder, device)
    model_id = index.manifest["model"]["id"]
    try:
        return get_encoder(model_id, device=device)
    except UnknownEncoderError:
        raise ModelMismatchError(
            f"index {index.path} was built with model {model_id!r}, which is not a registered encoder; "
            "pass encoder= the checkpoint it was built with"
        ) from None


def cached_index(
    rasters: RasterPaths,
    encoder: Encoder | str | None = None,
    *,
    tiling: TilingConfig | dict | None = None,
    cache_dir: PathLike | None = None,
    device: str | None = None,
    progress: ProgressCallback | None = None,
) -> GeoIndex:
    """Open (or build once) the index of ``rasters``, keyed by their content, the model and tiling.

    Indexes live under ``cache_dir`` (default :func:`default_cache_dir`) in ``indexes/<key>``.
    """
    encoder = _resolve_encoder(encoder, device)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    rasters = _as_list(rasters)
    catalog = RasterCatalog.from_paths(list(rasters))
    config = _default_tiling(encoder, tiling)
    key = json.dumps(
        {
            "rasters": sorted(source.checksum for source in catalog),
            "model": [encoder.model_id, encoder.checksum],
            "tiling": config.to_dict(),
        },
        sort_keys=True,
    )
    path = cache_dir / "indexes" / hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
    if (path / "manifest.json").is_file():
        index = GeoIndex.open(path)
        if len(index):
            return index
    # Build beside it and rename: an interrupted build never looks like a finished one.
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    build_index(catalog, partial, encoder=encoder, tiling=config, overwrite=True, progress=progress)
    shutil.rmtree(path, ignore_errors=True)  # an empty index left by an older, interrupted build
    try:
        os.replace(partial, path)
    except OSError:  # another process finished the same index first
        shutil.rmtree(partial, ignore_errors=True)
    return GeoIndex.open(path)


def resolve_modality(modality: str, pixels: np.ndarray) -> View:
    """Pick the query view: ``auto`` means panorama for wide images (aspect >= 1.8), else uav."""
    if modality != "auto":
        if modality not in VIEWS:
            raise ValueError(f"unknown modality {modality!r}; use auto or one of {', '.join(VIEWS)}")
        return modality
    height, width = pixels.shape[:2]
    return "panorama" if width / max(height, 1) >= 1.8 else "uav"


def _region_crs(region: Any, crs: Any) -> CRS | None:
    if crs is not None:
        return CRS.from_user_input(crs)
    if isinstance(region, (gpd.GeoDataFrame, gpd.GeoSeries)) and region.crs is not None:
        return CRS.from_user_input(region.crs)
    return None


def _is_raster_region(region: Any) -> bool:
    """Whether ``region`` names rasters (one path or a list of paths) rather than a geometry."""
    items = [region] if isinstance(region, (str, os.PathLike)) else region
    return (
        isinstance(items, (list, tuple))
        and len(items) > 0
        and all(isinstance(item, (str, os.PathLike)) for item in items)
    )


def localize(
    image: ImageInput,
    region: Any = None,
    *,
    index: GeoIndex | PathLike | None = None,
    modality: str = "auto",
    top_k: int = 10,
    encoder: Encoder | str | None = None,
    crs: Any = None,
    tiling: TilingConfig | dict | None = None,
    cache_dir: PathLike | None = None,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    refine: bool = True,
    refine_top_k: int = 10,
    rotations: int = 4,
    refiner: Refiner | None = None,
    query_gsd_m: float | None = None,
    explain: bool = False,
    language: str = "en",
    explain_backend: str | Explainer | None = None,
    explain_top_k: int = 3,
    figure_dir: PathLike | None = None,
) -> gpd.GeoDataFrame:
    """Find where ``image`` was taken: ranked, georeferenced candidates.

    Args:
        image: a path, bytes, PIL image or numpy array (EXIF orientation is honoured).
        region: where to search. One or more raster paths (an index is built on the fly and
            cached on disk, keyed by raster checksum, model and tiling); a :class:`GeoIndex`
            or index directory; or, together with ``index``, a shapely geometry (with
            ``crs``), a lon/lat bbox ``(minx, miny, maxx, maxy)``, a GeoDataFrame or a GeoSeries.
            ``None`` searches all of ``index``.
        index: the index to search when ``region`` is a geometry.
        modality: "auto", "uav", "satellite", "street_map", "panorama" or "ground".
        top_k: number of candidates.
        encoder: encoder, registered name or checkpoint path; default: the index's model.
        crs: CRS of a shapely ``region``; results come back in it (else in the region's own
            CRS for GeoDataFrames, else EPSG:4326).
        tiling: tiling for on-the-fly indexes (default: the encoder's card).
        cache_dir: where on-the-fly indexes are cached (default :func:`default_cache_dir`).
        device: "cpu", "cuda", "mps" or None for automatic.
        progress: progress callback for index building.
        refine: verify the best candidates by local feature matching against the source
            rasters, place the query precisely and re-rank by ``match_prob``.
        refine_top_k: how many retrieved candidates are refined at most; the default refiner
            stops at the first whose ``match_prob`` reaches its ``stop_prob`` (0.95), and the
            candidates after it keep ``match_prob`` NaN.
        rotations: with ``refine``, the query is also searched turned by this many evenly
            spaced angles (best score per chip), so retrieval copes with any heading.
        refiner: a configured :class:`~gleam_geo.refine.Refiner` (matcher, calibration).
        query_gsd_m: ground size of one pixel of a nadir query, metres, when known (flight
            altitude and camera); default: read from the query file's georeference, when it
            has one (a GeoTIFF, or a world file). With ``refine``, a query that no candidate
            verifies is then also searched by its edge layout around the candidates, which
            finds places whose land cover changed (e.g. years apart).
        explain: say for the first ``explain_top_k`` candidates whether the photo and the
            chip show the same place, and why (see :func:`gleam_geo.explain`).
        language: language of the explanations, "en" or "zh".
        explain_backend: explainer name ("evidence", "openai", "transformers", "auto") or
            instance; ``None`` is "auto": an OpenAI-compatible endpoint when
            ``GLEAM_GEO_LLM_BASE_URL`` is set, else the offline evidence explainer.
        explain_top_k: how many candidates are explained.
        figure_dir: where the explanation figures (PNG) go; default: ``explanations/figures``
            under :func:`default_cache_dir`.

    Returns:
        A GeoDataFrame sorted by rank with columns ``rank``, ``score``, ``geometry`` (best
        point estimate), ``footprint`` (polygon), ``chip_id``, ``source``, ``modality``,
        ``model`` and ``query_path``; with ``refine`` also ``match_prob``, ``heading_deg``,
        ``error_radius_m``, ``gsd_m``, ``inliers`` and ``refine_method``; with ``explain``
        also ``verdict``, ``explanation``, ``explanation_model``, ``language`` and
        ``figure_path`` (see :mod:`gleam_geo.schema`).
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if refine and refine_top_k < 1:
        raise ValueError(f"refine_top_k must be at least 1, got {refine_top_k}")
    if explain:
        from .explain import check_language

        check_language(language)
    query = load_image(image)
    if query_gsd_m is None:
        query_gsd_m = query.gsd_m  # a georeferenced query says its own pixel size
    search_region = None
    if isinstance(region, GeoIndex) or (
        isinstance(region, (str, os.PathLike)) and (Path(region) / "manifest.json").is_file()
    ):
        if index is not None:
            raise ValueError("pass the index either as region or as index=, not both")
        index, region = region, None
    if index is not None:
        geo_index = index if isinstance(index, GeoIndex) else GeoIndex.open(index)
        enc = _encoder_for_index(geo_index, encoder, device)
        if region is not None:
            search_region = to_wgs84_geometry(region, crs=crs)
    elif region is not None and _is_raster_region(region):
        enc = _resolve_encoder(encoder, device)
        geo_index = cached_index(region, enc, tiling=tiling, cache_dir=cache_dir, progress=progress)
    else:
        raise GleamGeoError(
            "localize() needs somewhere to search: pass raster paths or an index as region, "
            "or a region geometry together with index="
        )
    geo_index.check_model(enc.model_id, enc.checksum)
    view = resolve_modality(modality, query.pixels)
    out_crs = _region_crs(region, crs)
    if explain:
        from .explain import explain_results, keeping_images

        explain_options = {
            "language": language,
            "backend": explain_backend,
            "top_k": explain_top_k,
            "figure_dir": figure_dir,
            "cache_dir": Path(cache_dir) / "explanations" if cache_dir is not None else None,
        }
    if not refine:
        vector = enc.embed_images([query.pixels], view)
        scores, ids = geo_index.search(vector.astype(np.float32), top_k, region=search_region)
        keep = ids[0] >= 0
        results = _candidates(
            geo_index, scores[0][keep], ids[0][keep], view, enc.model_id, query.path, out_crs
        )
        if not explain:
            return results
        chips = geo_index.chips(ids[0][keep].tolist())
        return explain_results(results, query.pixels, chips, {}, **explain_options, refiner=refiner)
    from .refine import Refiner, search_rotations

    found_scores, found_ids = search_rotations(
        geo_index,
        enc,
        query.pixels,
        view,
        max(top_k, refine_top_k),
        rotations=rotations,
        region=search_region,
    )
    results = _candidates(geo_index, found_scores, found_ids, view, enc.model_id, query.path, out_crs)
    chips = geo_index.chips(found_ids[:refine_top_k].tolist())
    refiner = keeping_images(refiner) if explain else (refiner or Refiner())
    refinements = refiner.refine(query.pixels, chips, found_scores[:refine_top_k], query_gsd_m=query_gsd_m)
    results = _apply_refinements(results, refinements).head(top_k)
    if not explain:
        return results
    kept = dict(zip(chips["chip_id"].astype(str), refinements, strict=True))  # no early stop here
    return explain_results(
        results, query.pixels, geo_index.chips(found_ids.tolist()), kept, **explain_options, refiner=refiner
    )


def _apply_refinements(results: gpd.GeoDataFrame, refinements: Sequence[Refinement]) -> gpd.GeoDataFrame:
    """Write refinement columns into the first rows, then re-rank by ``match_prob``.

    Verified candidates get the projected query centre and outline; the order is by
    ``match_prob`` for the refined rows, then the remaining rows in retrieval order.
    """
    out_crs = CRS.from_user_input(results.crs)
    unrefined = {"inliers": 0, "refine_method": None}
    for name in column_names(REFINE_COLUMNS):
        results[name] = unrefined.get(name, np.nan)
    for row, refinement in enumerate(refinements):
        results.iloc[row, results.columns.get_loc("match_prob")] = refinement.match_prob
        results.iloc[row, results.columns.get_loc("inliers")] = refinement.inliers
        projection = refinement.projection
        if projection is None:
            continue
        to_out = _transformer(CRS.from_user_input(refinement.crs), out_crs)
        results.iloc[row, results.columns.get_loc("geometry")] = _transform(projection.point, to_out)
        results.iloc[row, results.columns.get_loc("footprint")] = _transform(
            projection.footprint.segmentize(projection.footprint.length / 64), to_out
        )
        for name in ("heading_deg", "error_radius_m", "gsd_m"):
            results.iloc[row, results.columns.get_loc(name)] = getattr(projection, name)
        results.iloc[row, results.columns.get_loc("refine_method")] = refinement.method
    refined = len(refinements)
    order = np.concatenate(
        [
            np.argsort(-results["match_prob"].to_numpy()[:refined], kind="stable"),
            np.arange(refined, len(results)),
        ]
    )
    results = results.iloc[order].reset_index(drop=True)
    results["rank"] = np.arange(1, len(results) + 1, dtype=np.int32)
    results["inliers"] = results["inliers"].astype(np.int32)
    return results[["rank", "score", "geometry", "footprint", *column_names()[2:]]]


def _transformer(source: CRS, target: CRS) -> Transformer:
    """A cached x/y-order transformer (building one costs tens of milliseconds), one per thread."""
    return _thread_transformer(source, target, threading.get_ident())


@lru_cache(maxsize=64)
def _thread_transformer(source: CRS, target: CRS, thread: int) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


def _transform(geometry: shapely.Geometry, transformer: Transformer) -> shapely.Geometry:
    """Reproject a shapely geometry with a pyproj transformer (x, y order)."""
    # lists, not arrays: pyproj's single-point fast path would warn about size-1 arrays
    return shapely.transform(
        geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0].tolist(), xy[:, 1].tolist()))
    )


def _candidates(
    index: GeoIndex,
    scores: np.ndarray,
    ids: np.ndarray,
    view: View,
    model_id: str,
    query_path: str | None,
    out_crs: CRS | None,
) -> gpd.GeoDataFrame:
    """Candidates as a GeoDataFrame: chip centres (computed in the chip's own CRS) and footprints."""
    out_crs = out_crs or CRS.from_epsg(4326)
    chips = index.chips(ids.tolist())
    points, footprints = [], []
    for crs_string, wkt in zip(chips["crs"], chips["native_footprint"], strict=True):
        native = shapely.from_wkt(wkt)
        to_out = _transformer(CRS.from_user_input(crs_string), out_crs)
        points.append(_transform(native.centroid, to_out))
        footprints.append(_transform(native.segmentize(native.length / 64), to_out))
    results = gpd.GeoDataFrame(
        {
            "rank": np.arange(1, len(ids) + 1, dtype=np.int32),
            "score": scores.astype(np.float64),
            "chip_id": chips["chip_id"].to_numpy(),
            "source": chips["source"].to_numpy(),
            "modality": view,
            "model": model_id,
            "query_path": query_path or "",
        },
        geometry=gpd.GeoSeries(points, crs=out_crs),
        crs=out_crs,
    )
    results["footprint"] = gpd.GeoSeries(footprints, crs=out_crs)
    return results[["rank", "score", "geometry", "footprint", *column_names(CORE_COLUMNS)[2:]]]
