"""open_raster and RasterSource on the sample rasters and on broken or synthetic ones."""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from datetime import date

import numpy as np
import pytest
import rasterio
from pyproj import Geod
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from gleam_geo.errors import NotGeoreferencedError, RasterReadError, UnknownCRSError
from gleam_geo.raster import TilingConfig, chip_grid, open_raster, read_chip

from .helpers import write_raster

GEOD = Geod(ellps="WGS84")


@pytest.mark.parametrize(
    ("name", "crs", "count"),
    [
        ("kampala", "EPSG:3857", 3),
        ("naip", "EPSG:26914", 4),
        ("valencia", "EPSG:3395", 3),
        ("netherlands", "EPSG:28992", 3),
        ("pix4d", "EPSG:32750", 4),
        ("colorado", "EPSG:26913", 3),
    ],
)
def test_sample_metadata_matches_rasterio(sample, name, crs, count):
    path = sample(name)
    source = open_raster(path)
    with rasterio.open(path) as dataset:
        assert source.crs == dataset.crs
        assert source.transform == dataset.transform
        assert tuple(source.bounds) == tuple(dataset.bounds)
        assert (source.width, source.height) == (dataset.width, dataset.height)
        centre = dataset.xy(dataset.height // 2, dataset.width // 2)
    assert source.path == os.path.abspath(path)
    assert source.crs_string == crs
    assert source.count == count
    assert source.dtype == "uint8"
    west, south, east, north = source.wgs84_bounds
    assert -180 <= west < east <= 180 and -90 <= south < north <= 90
    lon, lat = warp_transform(source.crs, "EPSG:4326", [centre[0]], [centre[1]])
    assert west < lon[0] < east and south < lat[0] < north


@pytest.mark.parametrize("name", ["naip", "netherlands", "colorado", "pix4d"])
def test_gsd_of_utm_and_national_grids_is_their_pixel_size(sample, name):
    source = open_raster(sample(name))
    # Transverse Mercator and the Dutch stereographic grid stay within 0.1 % of true scale here.
    assert source.gsd_m == pytest.approx(abs(source.transform.a), rel=2e-3)


@pytest.mark.parametrize("name", ["kampala", "valencia"])
def test_gsd_of_mercator_rasters_is_true_ground_metres(sample, name):
    source = open_raster(sample(name))
    lat = (source.wgs84_bounds[1] + source.wgs84_bounds[3]) / 2
    # Mercator metres shrink by cos(latitude) on the ground (22 % at Valencia, 39.5 N).
    assert source.pixel_size_m[0] == pytest.approx(
        abs(source.transform.a) * math.cos(math.radians(lat)), rel=2e-3
    )


def test_gsd_of_geographic_raster_uses_geodesic_distance(tmp_path):
    step = 1e-5
    path = write_raster(
        tmp_path / "wgs84.tif",
        np.full((3, 40, 60), 100, np.uint8),
        crs="EPSG:4326",
        transform=from_origin(10.0, 60.0, step, step),
    )
    source = open_raster(path)
    lon, lat = 10.0 + 30 * step, 60.0 - 20 * step
    expected_x = GEOD.inv(lon, lat, lon + step, lat)[2]
    expected_y = GEOD.inv(lon, lat, lon, lat - step)[2]
    assert source.pixel_size_m[0] == pytest.approx(expected_x, rel=1e-4)
    assert source.pixel_size_m[1] == pytest.approx(expected_y, rel=1e-4)
    assert source.pixel_size_m[1] > 1.9 * source.pixel_size_m[0]  # cos(60 deg) = 0.5


def test_naip_date_from_filename_and_bands(sample):
    source = open_raster(sample("naip"))
    assert source.acquired == date(2009, 8, 18)
    assert source.nodata == 0
    assert source.rgb_bands == (1, 2, 3)
    assert not source.has_alpha


def test_kampala_has_no_date(sample):
    assert open_raster(sample("kampala")).acquired is None


def test_date_from_metadata_beats_filename(tmp_path):
    data = np.full((3, 16, 16), 50, np.uint8)
    tagged = write_raster(
        tmp_path / "scene_20010203.tif", data, tags={"TIFFTAG_DATETIME": "2021:05:06 10:00:00"}
    )
    acquisition = write_raster(
        tmp_path / "other.tif",
        data,
        tags={"TIFFTAG_DATETIME": "2021:05:06 10:00:00", "ACQUISITIONDATETIME": "2019-07-14T09:30:00Z"},
    )
    bad = write_raster(tmp_path / "scene_20011332.tif", data)  # month 13: not a date
    assert open_raster(tagged).acquired == date(2021, 5, 6)
    assert open_raster(acquisition).acquired == date(2019, 7, 14)
    assert open_raster(bad).acquired is None


def test_pix4d_alpha(sample):
    source = open_raster(sample("pix4d"))
    assert source.has_alpha
    assert source.alpha_band == 4
    assert source.rgb_bands == (1, 2, 3)


def test_checksum_is_blake2b_of_the_bytes_and_cached(sample):
    path = sample("colorado")
    source = open_raster(path)
    expected = hashlib.blake2b(path.read_bytes(), digest_size=32).hexdigest()
    assert source.checksum == expected
    assert source.checksum is source.checksum


def test_vrt_checksum_follows_its_sources(tmp_path):
    tile = write_raster(tmp_path / "tile.tif", np.full((1, 32, 32), 7, np.uint8))
    vrt = tmp_path / "mosaic.vrt"
    with rasterio.open(tile) as dataset:
        geotransform = ", ".join(str(v) for v in dataset.transform.to_gdal())
        wkt = dataset.crs.to_wkt()
    vrt.write_text(
        f"""<VRTDataset rasterXSize="32" rasterYSize="32">
  <SRS>{wkt}</SRS>
  <GeoTransform>{geotransform}</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="1">tile.tif</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""
    )
    before = open_raster(vrt)
    assert before.checksum != hashlib.blake2b(vrt.read_bytes(), digest_size=32).hexdigest()
    write_raster(tile, np.full((1, 32, 32), 8, np.uint8))
    after = open_raster(vrt)
    assert after.checksum != before.checksum
    chip = next(chip_grid(after, TilingConfig(gsd_m=0.5, chip_size_px=32)))
    with rasterio.open(vrt) as dataset:
        image, valid = read_chip(dataset, after, chip)
    assert valid == 1.0
    assert np.all(image == 8)


def test_vrt_over_a_sample_reads_like_the_sample(sample, tmp_path):
    path = sample("netherlands")
    with rasterio.open(path) as dataset:
        geotransform = ", ".join(str(v) for v in dataset.transform.to_gdal())
        wkt = dataset.crs.to_wkt()
        width, height = dataset.width, dataset.height
    bands = "".join(
        f"""<VRTRasterBand dataType="Byte" band="{band}"><SimpleSource>
      <SourceFilename relativeToVRT="0">{path}</SourceFilename><SourceBand>{band}</SourceBand>
    </SimpleSource></VRTRasterBand>"""
        for band in (1, 2, 3)
    )
    vrt = tmp_path / "nl.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{wkt}</SRS>'
        f"<GeoTransform>{geotransform}</GeoTransform>{bands}</VRTDataset>"
    )
    source = open_raster(vrt)
    assert source.driver == "VRT"
    assert source.crs_string == "EPSG:28992"
    config = TilingConfig(gsd_m=source.gsd_m, chip_size_px=128)
    chip = list(chip_grid(source, config))[5]
    with rasterio.open(vrt) as dataset:
        image, _ = read_chip(dataset, source, chip)
    with rasterio.open(path) as dataset:
        w = chip.window
        direct = dataset.read([1, 2, 3], window=Window(w.col_off, w.row_off, w.width, w.height))
    assert np.array_equal(image, direct.transpose(1, 2, 0))


def test_jpeg2000_is_readable(sample, tmp_path):
    with rasterio.Env() as env:
        if "JP2OpenJPEG" not in env.drivers():
            pytest.skip("this GDAL has no JP2OpenJPEG driver")
    with rasterio.open(sample("kampala")) as dataset:
        window = Window(128, 64, 256, 256)
        data = dataset.read(window=window)
        transform = dataset.window_transform(window)
        crs = dataset.crs
    path = write_raster(
        tmp_path / "kampala.jp2",
        data,
        crs=crs.to_string(),
        transform=transform,
        driver="JP2OpenJPEG",
        QUALITY="100",
        REVERSIBLE="YES",
    )
    source = open_raster(path)
    assert source.driver == "JP2OpenJPEG"
    assert source.crs_string == "EPSG:3857"
    config = TilingConfig(gsd_m=source.gsd_m * 2, chip_size_px=64)
    chips = list(chip_grid(source, config))
    assert len(chips) >= 4
    with rasterio.open(path) as dataset:
        image, valid = read_chip(dataset, source, chips[0])
        w = chips[0].window
        expected = dataset.read(
            window=Window(w.col_off, w.row_off, w.width, w.height),
            out_shape=(3, 64, 64),
            resampling=Resampling.average,
        )
    assert valid > 0.99  # a few genuinely black shadow pixels count as black fill
    assert np.array_equal(image, expected.transpose(1, 2, 0))


def test_missing_file_raises_read_error(tmp_path):
    missing = tmp_path / "nope.tif"
    with pytest.raises(RasterReadError, match=r"cannot read raster .*nope\.tif") as info:
        open_raster(missing)
    assert isinstance(info.value, OSError)


def test_garbage_file_raises_read_error(tmp_path):
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"this is not a tiff" * 100)
    with pytest.raises(RasterReadError, match=r"garbage\.tif.*check the path"):
        open_raster(path)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_raises_read_error(sample, tmp_path, keep):
    data = sample("kampala").read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(RasterReadError, match=r"truncated\.tif"):
        open_raster(path)


def test_raster_without_crs_raises_not_georeferenced(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        path = write_raster(tmp_path / "plain.tif", np.zeros((3, 8, 8), np.uint8), crs=None, transform=None)
    with pytest.raises(NotGeoreferencedError, match=r"plain.tif has no CRS; .*gdal_edit.py"):
        open_raster(path)


def test_raster_without_geotransform_raises_not_georeferenced(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        path = write_raster(tmp_path / "notransform.tif", np.zeros((3, 8, 8), np.uint8), transform=None)
    with pytest.raises(NotGeoreferencedError, match="no geotransform"):
        open_raster(path)


def test_engineering_crs_raises_unknown_crs(tmp_path):
    local = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'
    path = write_raster(tmp_path / "local.tif", np.zeros((1, 8, 8), np.uint8), crs=local)
    with pytest.raises(UnknownCRSError, match=r"local\.tif"):
        open_raster(path)
