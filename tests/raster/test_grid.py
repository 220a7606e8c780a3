"""Chip grid geometry: TilingConfig, native windows in several CRSs, and XYZ tiles."""

from __future__ import annotations

import math

import mercantile
import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from pyproj import Geod

from gleam_geo.raster import (
    MAX_UPSAMPLE,
    TilingConfig,
    axis_offsets,
    chip_grid,
    chip_gsd_m,
    count_chips,
    open_raster,
    xyz_zoom,
)
from gleam_geo.records import Chip, PixelWindow

GEOD = Geod(ellps="WGS84")
NATIVE_SAMPLES = ["kampala", "naip", "valencia", "netherlands", "pix4d"]


# --- TilingConfig -------------------------------------------------------------------------


def test_config_round_trips_through_dict():
    config = TilingConfig(
        gsd_m=0.3, chip_size_px=224, overlap=0.25, scheme="xyz", zoom=18, max_nodata_fraction=0.2
    )
    data = config.to_dict()
    assert data == {
        "gsd_m": 0.3,
        "chip_size_px": 224,
        "overlap": 0.25,
        "scheme": "xyz",
        "zoom": 18,
        "max_nodata_fraction": 0.2,
    }
    assert TilingConfig.from_dict(data) == config


def test_config_coerces_json_numbers():
    config = TilingConfig.from_dict({"gsd_m": 1, "chip_size_px": np.int64(64), "overlap": 0})
    assert isinstance(config.gsd_m, float) and config.gsd_m == 1.0
    assert type(config.chip_size_px) is int


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gsd_m": 0, "chip_size_px": 224}, "gsd_m"),
        ({"gsd_m": float("nan"), "chip_size_px": 224}, "gsd_m"),
        ({"gsd_m": "0.3", "chip_size_px": 224}, "gsd_m"),
        ({"gsd_m": 0.3, "chip_size_px": 0}, "chip_size_px"),
        ({"gsd_m": 0.3, "chip_size_px": 224.0}, "chip_size_px"),
        ({"gsd_m": 0.3, "chip_size_px": True}, "chip_size_px"),
        ({"gsd_m": 0.3, "chip_size_px": 224, "overlap": 1.0}, "overlap"),
        ({"gsd_m": 0.3, "chip_size_px": 224, "overlap": -0.1}, "overlap"),
        ({"gsd_m": 0.3, "chip_size_px": 224, "scheme": "utm"}, "scheme"),
        ({"gsd_m": 0.3, "chip_size_px": 224, "zoom": 18}, "zoom only applies"),
        ({"gsd_m": 0.3, "chip_size_px": 224, "scheme": "xyz", "zoom": 40}, "zoom"),
        ({"gsd_m": 0.3, "chip_size_px": 224, "max_nodata_fraction": 1.5}, "max_nodata_fraction"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TilingConfig(**kwargs)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown TilingConfig keys"):
        TilingConfig.from_dict({"gsd_m": 0.3, "chip_size_px": 224, "stride": 3})


# --- window arithmetic --------------------------------------------------------------------


@given(
    raster=st.integers(min_value=1, max_value=5000),
    chip=st.integers(min_value=1, max_value=3000),
    overlap=st.floats(min_value=0.0, max_value=0.95),
)
def test_axis_offsets_cover_the_axis(raster, chip, overlap):
    stride = max(1, round(chip * (1 - overlap)))
    offsets = axis_offsets(raster, chip, stride)
    assert offsets == sorted(set(offsets))
    if raster >= chip:
        assert offsets[0] == 0
        assert offsets[-1] == raster - chip  # flush with the far edge, never past it
        steps = np.diff(offsets)
        assert np.all(steps[:-1] == stride)
        assert np.all((steps > 0) & (steps <= stride))  # no gap between neighbours
    elif 2 * raster >= chip:
        (offset,) = offsets
        assert offset <= 0 and offset + chip >= raster  # one chip holding the whole axis
        assert abs((offset + chip - raster) - (-offset)) <= 1  # centred
    else:
        assert offsets == []


def test_make_id_with_tile_differs_and_without_is_unchanged():
    window = PixelWindow(0, 0, 10, 10)
    plain = Chip.make_id("abc", window, 0.3, (224, 224))
    assert Chip.make_id("abc", window, 0.3, (224, 224), tile=None) == plain
    assert Chip.make_id("abc", window, 0.3, (224, 224), tile=(1, 2, 3)) != plain
    assert Chip.make_id("abc", window, 0.3, (224, 224), tile=(1, 2, 3)) != Chip.make_id(
        "abc", window, 0.3, (224, 224), tile=(1, 3, 3)
    )


# --- native grids on the samples ----------------------------------------------------------


def _config_for(source, overlap=0.5):
    """A config whose chips are about a quarter of the raster's shorter side."""
    ground = min(source.width * source.pixel_size_m[0], source.height * source.pixel_size_m[1]) / 4
    return TilingConfig(gsd_m=ground / 64, chip_size_px=64, overlap=overlap)


@pytest.mark.parametrize("name", NATIVE_SAMPLES)
def test_native_chips_lie_inside_the_raster(sample, name):
    source = open_raster(sample(name))
    config = _config_for(source)
    chips = list(chip_grid(source, config))
    assert len(chips) == count_chips(source, config) >= 9
    west, south, east, north = source.wgs84_bounds
    eps = 1e-9
    footprint = shapely.buffer(source.wgs84_footprint, 1e-7)
    for chip in chips:
        polygon = shapely.from_wkt(chip.wgs84_footprint_wkt)
        assert polygon.is_valid and polygon.area > 0
        cw, cs, ce, cn = polygon.bounds
        assert west - eps <= cw and ce <= east + eps and south - eps <= cs and cn <= north + eps
        assert footprint.contains(polygon)
        w = chip.window
        assert w.col_off >= 0 and w.col_off + w.width <= source.width
        assert w.row_off >= 0 and w.row_off + w.height <= source.height
        assert chip.crs == source.crs_string
        assert chip.size_px == (64, 64)
        assert chip.source == source.path and chip.source_checksum == source.checksum
        assert chip.chip_id == Chip.make_id(chip.source_checksum, w, chip.gsd_m, chip.size_px)
    assert len({chip.chip_id for chip in chips}) == len(chips)


@pytest.mark.parametrize("name", NATIVE_SAMPLES)
def test_native_chip_ground_size_matches_config(sample, name):
    source = open_raster(sample(name))
    config = _config_for(source)
    ground = config.chip_size_px * config.gsd_m
    for chip in list(chip_grid(source, config))[::3]:
        ring = shapely.from_wkt(chip.wgs84_footprint_wkt).exterior.coords
        top_left, top_right, bottom_right = ring[0], ring[8], ring[16]  # 8 points per edge
        width = GEOD.inv(*top_left, *top_right)[2]
        height = GEOD.inv(*top_right, *bottom_right)[2]
        # Whole-pixel windows: off by at most half a source pixel, plus projection drift.
        tolerance = 0.6 * source.gsd_m + 0.005 * ground
        assert width == pytest.approx(ground, abs=tolerance)
        assert height == pytest.approx(ground, abs=tolerance)


@pytest.mark.parametrize("name", ["kampala", "naip", "netherlands"])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_native_overlap_sets_the_stride(sample, name, overlap):
    source = open_raster(sample(name))
    config = _config_for(source, overlap)
    chips = list(chip_grid(source, config))
    window = chips[0].window
    stride_x = max(1, round(window.width * (1 - overlap)))
    stride_y = max(1, round(window.height * (1 - overlap)))
    cols = sorted({chip.window.col_off for chip in chips})
    rows = sorted({chip.window.row_off for chip in chips})
    assert np.all(np.diff(cols)[:-1] == stride_x)
    assert np.all(np.diff(rows)[:-1] == stride_y)
    assert cols[-1] + window.width == source.width and rows[-1] + window.height == source.height
    assert len(chips) == len(cols) * len(rows)
    covered = np.zeros((source.height, source.width), bool)
    for chip in chips:
        w = chip.window
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = True
    assert covered.all()


def test_coarse_rasters_are_not_upsampled_past_the_limit(sample):
    naip, kampala = open_raster(sample("naip")), open_raster(sample("kampala"))  # 5 m, 0.3 m
    config = TilingConfig(gsd_m=0.3, chip_size_px=128)
    assert chip_gsd_m(naip, config) == pytest.approx(naip.gsd_m / MAX_UPSAMPLE)
    assert chip_gsd_m(kampala, config) == 0.3
    chips = list(chip_grid(naip, config))
    assert [chip.gsd_m for chip in chips] == pytest.approx([naip.gsd_m / MAX_UPSAMPLE] * len(chips))
    assert chips[0].window.width == round(128 / MAX_UPSAMPLE)  # 64 NAIP pixels, not 8
    assert len(chips) == count_chips(naip, config) < 1000
    assert xyz_zoom(naip, TilingConfig(gsd_m=0.3, chip_size_px=256, scheme="xyz")) <= 16


def test_native_bounds_are_in_the_source_crs(sample):
    source = open_raster(sample("naip"))
    config = TilingConfig(gsd_m=5.0, chip_size_px=100, overlap=0.0)
    first = next(chip_grid(source, config))
    left, bottom, right, top = first.native_bounds
    assert (left, top) == pytest.approx((source.bounds.left, source.bounds.top))
    assert right - left == pytest.approx(500.0) and top - bottom == pytest.approx(500.0)


def test_raster_smaller_than_a_chip(sample):
    source = open_raster(sample("colorado"))  # 383 x 232 px at 0.15 m: 57 x 35 m
    # 448-pixel chips: the columns fit one centred chip, the rows span 232 >= 224 px: one chip.
    config = TilingConfig(gsd_m=0.3, chip_size_px=224)
    (chip,) = list(chip_grid(source, config))
    w = chip.window
    assert w.col_off < 0 and w.row_off < 0
    assert w.col_off + w.width > source.width and w.row_off + w.height > source.height
    assert abs(w.col_off + (w.col_off + w.width - source.width)) <= 1  # centred
    # 747-pixel chips: the 232 rows are less than half a chip, so nothing is yielded.
    too_big = TilingConfig(gsd_m=0.5, chip_size_px=224)
    assert count_chips(source, too_big) == 0
    assert list(chip_grid(source, too_big)) == []


# --- XYZ tiles ----------------------------------------------------------------------------


def test_xyz_tiles_cover_kampala(sample):
    source = open_raster(sample("kampala"))
    config = TilingConfig(gsd_m=0.3, chip_size_px=256, scheme="xyz")
    assert xyz_zoom(source, config) == 19  # 256 px at 0.3 m is about a zoom-19 tile at the equator
    chips = list(chip_grid(source, config))
    assert len(chips) == count_chips(source, config) > 0
    tiles = shapely.union_all([shapely.box(*chip.native_bounds) for chip in chips])
    raster = shapely.box(*source.bounds)
    assert tiles.contains(raster.buffer(-1e-6))
    for chip in chips:
        x, y, z = chip.tile
        assert z == 19
        assert chip.crs == "EPSG:3857"
        assert chip.native_bounds == pytest.approx(tuple(mercantile.xy_bounds(x, y, z)))
        assert shapely.box(*chip.native_bounds).intersection(raster).area > 0
        west, south, east, north = mercantile.bounds(x, y, z)
        assert shapely.from_wkt(chip.wgs84_footprint_wkt).bounds == pytest.approx((west, south, east, north))
        assert chip.chip_id == Chip.make_id(
            chip.source_checksum, chip.window, chip.gsd_m, chip.size_px, tile=chip.tile
        )
        # Kampala is mosaicked from zoom-19 tiles: each tile is exactly 256 source pixels.
        assert (chip.window.width, chip.window.height) == (256, 256)
        assert chip.gsd_m == pytest.approx(0.3, rel=0.01)
    assert len({chip.chip_id for chip in chips}) == len(chips)


@pytest.mark.parametrize("name", ["naip", "pix4d", "valencia"])
def test_xyz_tiles_of_projected_rasters(sample, name):
    source = open_raster(sample(name))
    config = TilingConfig(gsd_m=source.gsd_m * 2, chip_size_px=128, scheme="xyz")
    chips = list(chip_grid(source, config))
    assert len(chips) == count_chips(source, config) > 0
    zoom = xyz_zoom(source, config)
    footprint = source.wgs84_footprint
    for chip in chips:
        assert chip.tile[2] == zoom
        assert 0.5 * config.gsd_m < chip.gsd_m < 2.0 * config.gsd_m
        assert shapely.from_wkt(chip.wgs84_footprint_wkt).intersects(footprint)
        w = chip.window
        assert w.col_off >= 0 and w.col_off + w.width <= source.width
        assert w.row_off >= 0 and w.row_off + w.height <= source.height
    union = shapely.union_all([shapely.from_wkt(chip.wgs84_footprint_wkt) for chip in chips])
    assert union.buffer(1e-9).contains(footprint)


def test_xyz_explicit_zoom(sample):
    source = open_raster(sample("kampala"))
    config = TilingConfig(gsd_m=0.3, chip_size_px=256, scheme="xyz", zoom=17)
    chips = list(chip_grid(source, config))
    assert {chip.tile[2] for chip in chips} == {17}
    lat = (source.wgs84_bounds[1] + source.wgs84_bounds[3]) / 2
    expected_gsd = 2 * math.pi * 6378137 / 2**17 * math.cos(math.radians(lat)) / 256
    assert chips[0].gsd_m == pytest.approx(expected_gsd, rel=1e-3)
