"""Structure search on real rasters: any heading, either contrast sign, years of land-cover change."""

import math

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

import gleam_geo
from gleam_geo.evaluation import SUITES, render_view, sample_specs
from gleam_geo.index.sidecar import chips_to_table, table_to_geodataframe
from gleam_geo.raster import TilingConfig, chip_grid, open_raster
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
    # Fits, but leaves no room elsewhere to judge the peak: a peak ratio would be meaningless.
    assert search.search(reference[:300, :300], scale=1.2) is None
    assert search.search(reference[:100, :100], scale=1.0) is not None


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


@pytest.fixture(scope="module")
def naip_index(shared_data, tmp_path_factory):
    """The 2020 NAIP raster indexed at its own 5 m pixels."""
    path = tmp_path_factory.mktemp("naip") / "index"
    return gleam_geo.build_index([shared_data / NAIP_2020], path, tiling={"gsd_m": 5.0})


def test_localize_with_known_gsd_falls_back_to_structure(shared_data, naip_index, tmp_path):
    index = naip_index
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


def test_a_georeferenced_2009_crop_needs_no_gsd(shared_data, naip_index, tmp_path):
    _, query = _cross_time_query(shared_data)
    with rasterio.open(shared_data / NAIP_2020.replace("20200831", "20090818")) as dataset:
        col, row = (round(v) for v in ~dataset.transform * query.true_xy)
        window = Window(col - 72, row - 72, 144, 144)  # 720 m, north up
        transform = dataset.window_transform(window)
        profile = dataset.profile | {"driver": "GTiff", "width": 144, "height": 144, "transform": transform}
        pixels = dataset.read(window=window)
    path = tmp_path / "naip_2009_crop.tif"
    with rasterio.open(path, "w", **profile) as out:
        out.write(pixels)
    top = gleam_geo.localize(path, naip_index, crs=query.crs, top_k=1).iloc[0]
    assert top.refine_method == "structure" and top.match_prob > 0.5
    assert top.gsd_m == pytest.approx(5.0, rel=0.05)  # read from the file, not given
    assert math.dist((top.geometry.x, top.geometry.y), transform * (72, 72)) < 15.0


def _first_chips(paths, gsd_m):
    """One chip of each raster, as the sidecar rows ``Refiner.refine`` takes."""
    config = TilingConfig(gsd_m=gsd_m, chip_size_px=128)
    chips = [next(chip_grid(open_raster(str(path)), config)) for path in paths]
    return table_to_geodataframe(chips_to_table(chips), np.arange(len(chips)))


def _whole(refiner, query, path, gsd):
    source = open_raster(str(path))
    return refiner.search_structure(query, source, PixelWindow(0, 0, source.width, source.height), gsd)


def test_fallback_weighs_other_rasters_peaks_unless_they_are_the_same_place(shared_data):
    refiner = Refiner()
    # A place in neither raster: the Manila peak is a rival of the Netherlands one.
    suite = SUITES["out_of_index"]
    spec = sample_specs(
        str(shared_data / suite.query_source), 17, 1, size_px=suite.size_px, side_m=suite.side_m,
        tilt_deg=suite.tilt_deg, photometric=suite.photometric,
    )[16]  # fmt: skip
    query, gsd = render_view(spec).pixels, spec.ground_side_m / spec.size_px
    paths = [shared_data / "netherlands/nl_25cm.tif", shared_data / "oam_tcd/manila_10cm.tif"]
    alone = [_whole(refiner, query, path, gsd) for path in paths]
    best, rival = sorted(alone, key=lambda found: -found.match_prob)
    (fallback, _) = refiner.refine(query, _first_chips(paths, 0.3), [0.5, 0.5], query_gsd_m=gsd)
    assert fallback.method == "structure"
    assert fallback.features[1] == pytest.approx(min(best.features[1], best.features[0] / rival.features[0]))
    assert fallback.match_prob < best.match_prob
    # The same place in 2014 and 2020: the other date's peak is support, not a rival.
    spec, found = _cross_time_query(shared_data)
    gsd = spec.ground_side_m / spec.size_px
    paths = [shared_data / NAIP_2020, shared_data / NAIP_2020.replace("20200831", "20140720")]
    alone = max((_whole(refiner, found.pixels, path, gsd) for path in paths), key=lambda f: f.match_prob)
    refined = refiner.refine(found.pixels, _first_chips(paths, 5.0), [0.5, 0.5], query_gsd_m=gsd)
    fallback = max(refined, key=lambda refinement: refinement.match_prob)
    assert fallback.method == "structure" and fallback.features == pytest.approx(alone.features)
    assert fallback.match_prob > 0.9


def test_structure_calibration_has_its_own_features(tmp_path):
    assert load_structure_calibration().feature_names == STRUCTURE_FEATURES
    path = tmp_path / "calibration.json"
    load_calibration().save(path)
    with pytest.raises(ValueError, match="expected"):
        load_structure_calibration(path)
