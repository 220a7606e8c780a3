"""The GeoParquet sidecar: valid GeoParquet, fixed dtypes, row i is vector i, partial reads."""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from pyproj import CRS

from gleam_geo.index import GeoIndex
from gleam_geo.index import sidecar as sidecar_module
from gleam_geo.index.sidecar import SCHEMA, Sidecar, chips_to_table

from .helpers import DIM, MODEL, TILING, build, synthetic_chips, unit_vectors


@pytest.fixture(scope="module")
def index(raster_chips, tmp_path_factory):
    return build(tmp_path_factory.mktemp("sidecar") / "idx", raster_chips, unit_vectors(len(raster_chips), 1))


def sidecar_path(index):
    return index.path / index.manifest["files"]["chips"]


def test_geo_metadata_is_geoparquet(index, raster_chips):
    geo = json.loads(pq.read_schema(sidecar_path(index)).metadata[b"geo"])
    assert geo["version"] in ("1.0.0", "1.1.0")
    assert geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB"
    assert CRS.from_json_dict(column["crs"]) == CRS.from_epsg(4326)
    assert column["geometry_types"] == ["Polygon"]
    footprints = shapely.from_wkt([chip.wgs84_footprint_wkt for chip in raster_chips])
    assert column["bbox"] == pytest.approx(list(shapely.total_bounds(footprints)))


def test_geopandas_round_trip(index, raster_chips):
    frame = gpd.read_parquet(sidecar_path(index))
    assert frame.crs == CRS.from_epsg(4326)
    assert list(frame["chip_id"]) == [chip.chip_id for chip in raster_chips]
    expected = shapely.from_wkt([chip.wgs84_footprint_wkt for chip in raster_chips])
    assert shapely.equals_exact(frame.geometry.values, expected, tolerance=0).all()
    assert list(frame["crs"].unique()) == ["EPSG:3857", "EPSG:28992"]
    native = shapely.from_wkt(frame["native_footprint"])
    assert np.allclose(shapely.bounds(native), [chip.native_bounds for chip in raster_chips], rtol=0, atol=0)


def test_fixed_dtypes(index):
    schema = pq.read_schema(sidecar_path(index)).remove_metadata()
    assert schema == SCHEMA
    assert schema.field("col_off").type == pa.int64() and schema.field("width_px").type == pa.int32()
    assert schema.field("acquired").type == pa.date32() and schema.field("tile_z").type == pa.int32()
    assert all(schema.field(name).type == pa.float64() for name in ("minx", "miny", "maxx", "maxy", "gsd_m"))


def test_row_i_is_vector_i(tmp_path, raster_chips):
    vectors = unit_vectors(len(raster_chips), 2)
    index = build(tmp_path / "idx", raster_chips, vectors)
    scores, ids = index.search(vectors, 1)
    assert ids[:, 0].tolist() == list(range(len(raster_chips)))
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    rows = index.chips(ids[:, 0])
    assert list(rows["chip_id"]) == [chip.chip_id for chip in raster_chips]


def test_chips_in_given_order_with_metadata(index, raster_chips):
    ids = [40, 3, 3, 0, 71]
    rows = index.chips(ids)
    assert list(rows.index) == ids and rows.index.name == "vector_id"
    assert list(rows["chip_id"]) == [raster_chips[i].chip_id for i in ids]
    assert rows.crs == CRS.from_epsg(4326)
    first, chip = rows.loc[0], raster_chips[0]
    assert first["acquired"] == date(2020, 5, 17)
    assert (first["tile_x"], first["tile_y"], first["tile_z"]) == chip.tile
    window = (first["col_off"], first["row_off"], first["width"], first["height"])
    assert window == (chip.window.col_off, chip.window.row_off, chip.window.width, chip.window.height)
    assert first["width_px"] == 64 and first["gsd_m"] == 0.5
    dutch = rows.loc[71]
    assert dutch["acquired"] is None and pd.isna(dutch["tile_x"])


def test_chips_refuses_out_of_range_ids(index):
    with pytest.raises(IndexError, match="-1 padding"):
        index.chips([0, -1])
    with pytest.raises(IndexError, match="out of range"):
        index.chips([len(index)])


def test_partial_reads_across_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(sidecar_module, "ROW_GROUP_ROWS", 100)
    chips = synthetic_chips(1000)
    index = build(tmp_path / "idx", chips, unit_vectors(1000, 3))
    sidecar = Sidecar(sidecar_path(index))
    assert pq.ParquetFile(sidecar.path).metadata.num_row_groups == 10
    ids = np.array([999, 0, 512, 101, 100, 99, 512])
    assert sidecar.read_rows(ids, ["chip_id"]).column(0).to_pylist() == [chips[i].chip_id for i in ids]
    # bbox filtering skips row groups by statistics and agrees with a full scan
    bbox = (30.0105, 0.0035, 30.0205, 0.0072)
    boxes = shapely.bounds(shapely.from_wkt([chip.wgs84_footprint_wkt for chip in chips]))
    expected = np.flatnonzero(
        (boxes[:, 2] >= bbox[0])
        & (boxes[:, 0] <= bbox[2])
        & (boxes[:, 3] >= bbox[1])
        & (boxes[:, 1] <= bbox[3])
    )
    read = []
    original = pq.ParquetFile.read_row_group

    def counting(self, group, **kwargs):
        read.append(group)
        return original(self, group, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    assert sidecar.bbox_candidates(bbox).tolist() == expected.tolist()
    assert read == [1, 2, 3]  # 100 rows = 2 rows of the grid = 0.002 degrees of latitude per group


def test_invalid_footprints_are_refused():
    chip = synthetic_chips(1)[0]
    for wkt, match in (
        ("POLYGON ((0 0, 1 0", "not valid WKT"),
        ("POINT (30 0)", "not a non-empty"),
        ("POLYGON ((500000 0, 500100 0, 500100 100, 500000 0))", "not lon/lat"),
    ):
        with pytest.raises(ValueError, match=match):
            chips_to_table([dataclasses.replace(chip, wgs84_footprint_wkt=wkt)])


def test_empty_index_sidecar_is_valid_geoparquet(tmp_path):
    empty = GeoIndex.create(tmp_path / "idx", embed_dim=DIM, tiling=TILING, **MODEL)
    frame = gpd.read_parquet(sidecar_path(empty))
    assert len(frame) == 0 and frame.crs == CRS.from_epsg(4326)
    assert empty.info()["bounds_wgs84"] is None
