"""Fixtures for the QGIS plugin tests: the plugin on sys.path, the worker, sample imagery.

Indexes and the reference localization are built once per session on kampala_z19.tif
(0.3 m, about 230 m x 150 m), read in place from ../shared/data. Screenshots go to a
temporary folder, or to docs/images with ``GLEAM_GEO_UPDATE_DOCS_IMAGES=1``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_test_utils import CROP_CENTRE_PX, CROP_SIZE_PX, DOCS_IMAGES, KAMPALA, PLUGIN_ROOT

if str(PLUGIN_ROOT) not in sys.path:
    sys.path.insert(0, str(PLUGIN_ROOT))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.qgis)


@pytest.fixture(scope="session", autouse=True)
def gleam_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep on-the-fly indexes of this session out of the user's cache."""
    path = tmp_path_factory.mktemp("gleam_cache")
    previous = os.environ.get("GLEAM_GEO_CACHE")
    os.environ["GLEAM_GEO_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("GLEAM_GEO_CACHE", None)
    else:
        os.environ["GLEAM_GEO_CACHE"] = previous


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: docs/images with GLEAM_GEO_UPDATE_DOCS_IMAGES=1, else a temporary folder."""
    if os.environ.get("GLEAM_GEO_UPDATE_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        return DOCS_IMAGES
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def worker_spec() -> Any:
    """How the plugin starts the worker by default: this checkout's .venv Python."""
    from gleam_geo_qgis.settings import PluginSettings, resolve_worker

    spec = resolve_worker(PluginSettings())
    assert spec.python, "no default worker Python found; is there a .venv in the checkout?"
    return spec


@pytest.fixture(scope="session")
def kampala(shared_data: Path) -> Path:
    path = shared_data / KAMPALA
    if not path.is_file():
        pytest.fail(f"{path} is missing from the sample data")
    return path


@pytest.fixture(scope="session")
def query_crop(kampala: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A ~38 m crop of kampala_z19.tif saved as PNG, and the lon/lat of its centre."""
    import numpy as np
    import rasterio
    from PIL import Image
    from pyproj import Transformer
    from rasterio.windows import Window

    col, row = CROP_CENTRE_PX
    half = CROP_SIZE_PX // 2
    with rasterio.open(kampala) as dataset:
        pixels = dataset.read([1, 2, 3], window=Window(col - half, row - half, CROP_SIZE_PX, CROP_SIZE_PX))
        x, y = dataset.xy(row, col)
        to_wgs84 = Transformer.from_crs(dataset.crs, "EPSG:4326", always_xy=True)
    lon, lat = to_wgs84.transform(x, y)
    path = tmp_path_factory.mktemp("queries") / "kampala_crop.png"
    Image.fromarray(np.moveaxis(pixels, 0, -1)).save(path)
    return {"path": str(path), "lon": lon, "lat": lat}


@pytest.fixture(scope="session")
def kampala_small(kampala: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 320 x 256 px GeoTIFF cut from kampala_z19.tif around the query crop (12 chips: quick to index)."""
    import rasterio
    from rasterio.windows import Window

    col, row = CROP_CENTRE_PX
    window = Window(col - 150, row - 110, 320, 256)
    path = tmp_path_factory.mktemp("rasters") / "kampala_small.tif"
    with rasterio.open(kampala) as dataset:
        profile = dataset.profile | {
            "width": 320,
            "height": 256,
            "transform": dataset.window_transform(window),
            "tiled": False,
        }
        pixels = dataset.read(window=window)
    profile.pop("blockxsize", None)
    profile.pop("blockysize", None)
    with rasterio.open(path, "w", **profile) as out:
        out.write(pixels)
    return path


@pytest.fixture(scope="session")
def kampala_index(
    worker_spec: Any, kampala: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """An index of kampala_z19.tif, built once through the worker; its summary."""
    from gleam_geo_qgis.worker_client import run_request

    out = tmp_path_factory.mktemp("indexes") / "kampala"
    return run_request(
        worker_spec.python,
        "build_index",
        {"rasters": [str(kampala)], "out_dir": str(out)},
        pythonpath=worker_spec.pythonpath,
    )


@pytest.fixture(scope="session")
def localization(
    worker_spec: Any,
    kampala_index: dict[str, Any],
    query_crop: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """One localize result (top 5) of the crop against the index, with chip images."""
    from gleam_geo_qgis.worker_client import run_request

    chip_dir = tmp_path_factory.mktemp("chips")
    return run_request(
        worker_spec.python,
        "localize",
        {
            "images": [query_crop["path"]],
            "index": kampala_index["path"],
            "top_k": 5,
            "chip_dir": str(chip_dir),
        },
        pythonpath=worker_spec.pythonpath,
    )


@pytest.fixture(scope="session")
def explained_localization(
    worker_spec: Any,
    kampala_index: dict[str, Any],
    query_crop: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The localization above with explanations (offline evidence explainer) of the top candidates."""
    from gleam_geo_qgis.worker_client import run_request

    out = tmp_path_factory.mktemp("explained")
    return run_request(
        worker_spec.python,
        "localize",
        {
            "images": [query_crop["path"]],
            "index": kampala_index["path"],
            "top_k": 3,
            "chip_dir": str(out / "chips"),
            "explain": True,
            "language": "en",
            "explain_backend": "evidence",
            "figure_dir": str(out / "figures"),
        },
        pythonpath=worker_spec.pythonpath,
    )
