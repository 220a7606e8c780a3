"""RasterCatalog: collecting rasters from files, folders and globs, in several CRSs."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from gleam_geo.errors import RasterReadError
from gleam_geo.raster import RasterCatalog, open_raster

from .helpers import write_raster


def test_from_paths_mixes_files_folders_and_globs(shared_data, sample):
    catalog = RasterCatalog.from_paths(
        [
            shared_data / "kampala",  # folder: four rasters (the geojson is ignored)
            str(shared_data / "naip_nd" / "*_2009*.tif"),  # glob: one raster
            sample("pix4d"),  # file
            str(sample("pix4d")),  # the same file again: opened once
        ]
    )
    names = [source.path.rsplit("/", 1)[-1] for source in catalog]
    assert len(catalog) == 6
    assert names[:4] == sorted(names[:4]) and all(name.startswith("kampala_") for name in names[:4])
    assert names[4:] == ["naip_m_4709963_se_14_1_20090818.tif", "pix4d_orthomosaic_alpha.tif"]
    assert {source.crs_string for source in catalog} == {"EPSG:3857", "EPSG:26914", "EPSG:32750"}
    assert catalog[5].path == str(sample("pix4d"))


def test_folders_are_searched_recursively_by_extension(tmp_path):
    data = np.full((3, 8, 8), 9, np.uint8)
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_raster(tmp_path / "a" / "b" / "deep.TIF", data)
    write_raster(tmp_path / "top.tiff", data)
    (tmp_path / "notes.txt").write_text("not a raster")
    catalog = RasterCatalog.from_paths(tmp_path)
    assert sorted(source.path.rsplit("/", 1)[-1] for source in catalog) == ["deep.TIF", "top.tiff"]


def test_nothing_found_raises(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RasterReadError, match="no raster files found"):
        RasterCatalog.from_paths([tmp_path / "empty"])
    with pytest.raises(RasterReadError, match="no raster files found"):
        RasterCatalog.from_paths(str(tmp_path / "*.tif"))
    with pytest.raises(RasterReadError, match="no such file or folder"):
        RasterCatalog.from_paths(tmp_path / "missing.tif")


def test_wgs84_union_covers_every_footprint(sample):
    sources = [open_raster(sample(name)) for name in ("kampala", "naip", "valencia")]
    catalog = RasterCatalog(sources)
    union = catalog.wgs84_union()
    assert len(catalog) == 3 and list(catalog) == sources
    assert isinstance(union, shapely.MultiPolygon)  # three continents apart
    for source in sources:
        assert union.buffer(1e-9).contains(source.wgs84_footprint)
    assert union.area == pytest.approx(sum(source.wgs84_footprint.area for source in sources))
