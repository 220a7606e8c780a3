import geopandas as gpd
import pytest
import shapely

from gleam_geo.io import write_results


@pytest.fixture
def results():
    frame = gpd.GeoDataFrame(
        {"rank": [1, 2], "score": [0.9, 0.5], "chip_id": ["a", "b"]},
        geometry=gpd.GeoSeries([shapely.Point(32.58, 0.33), shapely.Point(32.59, 0.34)], crs=4326),
        crs=4326,
    )
    frame["footprint"] = gpd.GeoSeries([p.buffer(0.001) for p in frame.geometry], crs=4326)
    return frame


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".parquet"])
def test_round_trip(results, tmp_path, suffix):
    path = write_results(results, tmp_path / f"r{suffix}")
    back = gpd.read_parquet(path) if suffix == ".parquet" else gpd.read_file(path)
    assert back["chip_id"].tolist() == ["a", "b"]
    assert back.geometry.geom_equals_exact(results.geometry, 1e-9).all()
    footprint = back["footprint"] if suffix == ".parquet" else gpd.GeoSeries.from_wkt(back["footprint_wkt"])
    assert footprint.iloc[0].equals_exact(results["footprint"].iloc[0], 1e-9)


def test_failed_write_keeps_the_old_file(results, tmp_path, monkeypatch):
    path = write_results(results, tmp_path / "r.gpkg")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gpd.GeoDataFrame, "to_file", boom)
    with pytest.raises(RuntimeError):
        write_results(results, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.gpkg"]


def test_unknown_extension(results, tmp_path):
    with pytest.raises(ValueError, match="unknown extension"):
        write_results(results, tmp_path / "r.shp")
