"""Structure search on real rasters: any heading, either contrast sign, years of land-cover change."""

import math

import cv2
import pytest
import rasterio

import gleam_geo
from gleam_geo.evaluation import SUITES, render_view, sample_specs
from gleam_geo.raster import open_raster
from gleam_geo.records import PixelWindow
from gleam_geo.refine import Refiner, read_patch
from gleam_geo.refine.calibration import load_calibration
from gleam_geo.refine.refiner import load_structure_calibration
from gleam_geo.refine.structure import STRUCTURE_FEATURES, StructureMatch, StructureSearch

NAIP_2020 = "naip_nd/naip_m_4709963_se_14_1_20200831.tif"


@pytest.fixture(scope="module")
def reference(shared_data):
    """A 400 x 400 px window of NAIP 2020 at its own 5 m pixels."""
    source = open_raster(str(shared_data / NAIP_2020))
    with rasterio.open(source.path) as dataset:
        return read_patch(dataset, source, PixelWindow(200, 150, 400, 400), margin=1.0, gsd_m=5.0).pixels


def _turned_crop(image, centre, side, angle, scale):
    """The square of ``side`` px around ``centre``, turned clockwise by ``angle`` and scaled."""
    matrix = cv2.getRotationMatrix2D(centre, -angle, scale)
    out = round(side * scale)
    matrix[:, 2] += (out / 2 - centre[0], out / 2 - centre[1])
    return cv2.warpAffine(image, matrix, (out, out), flags=cv2.INTER_AREA)


@pytest.mark.parametrize("angle", [0.0, 37.0, 211.0])
def test_turned_scaled_crop_is_found(reference, angle):
    query = _turned_crop(reference, (230.0, 170.0), 120, angle, scale=1.5)
    match = StructureSearch(reference).search(query, scale=1 / 1.5)
    assert match is not None
    assert math.dist(match.centre_px, (230.0, 170.0)) < 2.0
    assert abs((match.angle_deg - angle + 180) % 360 - 180) <= 1.5
    assert match.ncc > 0.5 and match.peak_ratio > 1.5


def test_inverted_contrast_is_found(reference):
    query = 255 - _turned_crop(reference, (150.0, 260.0), 120, 90.0, scale=1.0)
    match = StructureSearch(reference).search(query, scale=1.0)
    assert math.dist(match.centre_px, (150.0, 260.0)) < 2.0


def test_query_too_small_or_too_large_gives_none(reference):
    search = StructureSearch(reference)
    assert search.search(reference[:40, :40], scale=0.2) is None
    assert search.search(reference, scale=1.2) is None


def test_homography_maps_the_centre_and_turns_counter_clockwise():
    match = StructureMatch(ncc=0.5, peak_ratio=2.0, angle_deg=90.0, centre_px=(100.0, 50.0), scale=2.0)
    homography = match.homography((20, 10))
    centre, right = homography @ [10, 5, 1], homography @ [20, 5, 1]
    assert centre[:2] == pytest.approx([100.0, 50.0])
    assert right[:2] == pytest.approx([100.0, 30.0])  # the query's +x turned to screen up, doubled


def _cross_time_query(shared_data):
    suite = SUITES["cross_time"]
    spec = sample_specs(
        str(shared_data / suite.query_source), 1, 1, size_px=suite.size_px, side_m=suite.side_m
    )[0]
    return spec, render_view(spec)


def test_2009_view_is_found_in_2020_and_absent_place_gets_low_probability(shared_data):
    spec, query = _cross_time_query(shared_data)
    source = open_raster(str(shared_data / NAIP_2020))
    refiner = Refiner()
    gsd = spec.ground_side_m / spec.size_px
    found = refiner.search_structure(
        query.pixels, source, PixelWindow(0, 0, source.width, source.height), gsd
    )
    error = math.dist((found.projection.point.x, found.projection.point.y), query.true_xy)
    assert found.method == "structure" and found.inliers == 0
    assert error < 15.0 and error <= found.projection.error_radius_m
    assert found.match_prob > 0.9
    assert abs((found.projection.heading_deg - query.true_heading_deg + 180) % 360 - 180) < 3
    assert found.projection.gsd_m == pytest.approx(gsd, rel=0.02)
    col, _ = ~source.transform * query.true_xy
    half = source.width // 2
    window = (
        PixelWindow(half, 0, source.width - half, source.height)
        if col < half
        else PixelWindow(0, 0, half, source.height)
    )
    absent = refiner.search_structure(query.pixels, source, window, gsd)
    assert absent.match_prob < 0.5


def test_localize_with_known_gsd_falls_back_to_structure(shared_data, tmp_path):
    index = gleam_geo.build_index([shared_data / NAIP_2020], tmp_path / "naip", tiling={"gsd_m": 5.0})
    spec, query = _cross_time_query(shared_data)
    gsd = spec.ground_side_m / spec.size_px
    results = gleam_geo.localize(query.pixels, index, crs=query.crs, top_k=3, query_gsd_m=gsd)
    top = results.iloc[0]
    assert math.dist((top.geometry.x, top.geometry.y), query.true_xy) < 15.0
    assert top.match_prob > 0.9 and top.inliers == 0 and top.refine_method == "structure"
    assert results.refine_method.iloc[1:].isna().all()  # the others did not verify
    explained = gleam_geo.localize(
        query.pixels, index, crs=query.crs, top_k=1, query_gsd_m=gsd, explain=True, figure_dir=tmp_path
    ).iloc[0]
    assert explained.verdict and explained.refine_method == "structure"
    assert "edge" in explained.explanation and f"{top.match_prob:.0%}" in explained.explanation
    with pytest.raises(ValueError, match="query_gsd_m"):
        gleam_geo.localize(query.pixels, index, top_k=3, query_gsd_m=-1.0)


def test_structure_calibration_has_its_own_features(tmp_path):
    assert load_structure_calibration().feature_names == STRUCTURE_FEATURES
    path = tmp_path / "calibration.json"
    load_calibration().save(path)
    with pytest.raises(ValueError, match="expected"):
        load_structure_calibration(path)
