"""The demo runs end to end (on two small sample rasters, to keep the suite fast)."""

import geopandas as gpd

from gleam_geo.demo import run_demo


def test_demo_finds_its_queries_and_writes_the_map(shared_data, tmp_path):
    rasters = ("kampala/kampala_z21_block2.tif", "usgs/colorado_15cm.tif")
    report = run_demo(shared_data, tmp_path, rasters=rasters)
    results = gpd.read_file(tmp_path / "results.gpkg")
    best = results[results["rank"] == 1]
    assert len(best) == 4  # two queries per raster
    assert (best["error_m"] < 5).sum() >= 3
    assert "queries found within" in report and "median error" in report
    html = (tmp_path / "map.html").read_text()
    assert "leaflet" in html.lower() and "true:" in html
