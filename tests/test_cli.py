"""The gleam-geo command line, run as a real subprocess: exit codes, outputs and error lines."""

import json
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pytest
from PIL import Image


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gleam_geo.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture(scope="module")
def cli_index(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "idx"
    done = run("index", "build", shared_data / "kampala" / "kampala_z21_block2.tif", "-o", out, "-q")
    assert done.returncode == 0, done.stderr
    assert "indexed" in done.stdout
    return out


def test_help_has_examples():
    done = run("--help")
    assert done.returncode == 0 and "Examples:" in done.stdout
    for command in (["index", "build"], ["localize"], ["demo"]):
        sub = run(*command, "--help")
        assert sub.returncode == 0 and "Example" in sub.stdout


def test_index_info_json(cli_index):
    done = run("index", "info", cli_index, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["count"] > 0 and info["model"]["id"] == "geoembed-v3"


def test_index_add_skips_known_rasters_and_adds_new_ones(cli_index, shared_data):
    before = json.loads(run("index", "info", cli_index, "--json").stdout)["count"]
    again = run("index", "add", cli_index, shared_data / "kampala" / "kampala_z21_block2.tif", "-q")
    assert again.returncode == 0 and "added 0 chips" in again.stdout
    more = run("index", "add", cli_index, shared_data / "usgs" / "colorado_15cm.tif", "-q")
    assert more.returncode == 0, more.stderr
    after = json.loads(run("index", "info", cli_index, "--json").stdout)["count"]
    assert after > before


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".parquet", ".csv"])
def test_localize_writes_each_format(cli_index, shared_data, tmp_path, suffix):
    import rasterio

    with rasterio.open(shared_data / "kampala" / "kampala_z21_block2.tif") as src:
        pixels = np.moveaxis(src.read([1, 2, 3], window=((100, 612), (200, 712))), 0, -1)
    query = tmp_path / "query.png"
    Image.fromarray(pixels).save(query)
    out = tmp_path / f"hits{suffix}"
    done = run("localize", query, "--index", cli_index, "--top-k", 3, "-o", out, "-q")
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "wrote 3 candidates" in done.stdout
    if suffix == ".csv":
        text = out.read_text()
        assert "footprint_wkt" in text and "lon" in text.splitlines()[0]
    else:
        frame = gpd.read_parquet(out) if suffix == ".parquet" else gpd.read_file(out)
        assert len(frame) == 3 and frame["rank"].tolist() == [1, 2, 3]


def test_errors_are_one_line_without_traceback(cli_index, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    done = run("localize", bad, "--index", cli_index)
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot decode") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_region_outside_the_index_fails_cleanly(cli_index, shared_data, tmp_path):
    query = tmp_path / "q.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(query)
    done = run("localize", query, "--index", cli_index, "--bbox", 10, 50, 10.1, 50.1)
    assert done.returncode == 1 and "covers none" in done.stderr


def test_usage_error_exit_code(tmp_path):
    query = tmp_path / "q.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(query)
    assert run("localize", query).returncode == 2  # neither --index nor --raster
