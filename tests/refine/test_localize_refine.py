"""End to end: a real index of kampala_z19, views rendered from kampala_z20, SIFT refinement."""

import math
from pathlib import Path

import numpy as np
import pytest

import gleam_geo
from gleam_geo.evaluation import ViewSpec, render_view
from gleam_geo.schema import column_names

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA / "kampala").is_dir(), reason="sample data not found")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return gleam_geo.build_index(
        [DATA / "kampala" / "kampala_z19.tif"],
        tmp_path_factory.mktemp("idx"),
        tiling={"overlap": 0.0},
    )


def _view(source, heading, side, tilt=0.0):
    raster = gleam_geo.raster.open_raster(source)
    left, bottom, right, top = raster.bounds
    centre = (left + 0.45 * (right - left), bottom + 0.55 * (top - bottom))
    return render_view(ViewSpec(str(source), centre, heading, side, 256, tilt, photometric=True, seed=3))


def test_rotated_scaled_tilted_view_is_placed_precisely(index):
    query = _view(DATA / "kampala" / "kampala_z20.tif", heading=137.0, side=60.0, tilt=20.0)
    results = gleam_geo.localize(query.pixels, index, crs=query.crs, top_k=3)
    assert list(results.columns) == ["rank", "score", "geometry", "footprint", *column_names()[2:]]
    top = results.iloc[0]
    error = math.hypot(top.geometry.x - query.true_xy[0], top.geometry.y - query.true_xy[1])
    assert error < 2.0
    assert abs((top.heading_deg - query.true_heading_deg + 180) % 360 - 180) < 5
    assert top.gsd_m == pytest.approx(60.0 / 256, rel=0.15)
    assert top.inliers >= 15 and top.match_prob > 0.8
    assert top.footprint.contains(top.geometry)
    assert error <= top.error_radius_m * 3


def test_place_not_in_index_gets_low_probability(index):
    query = _view(DATA / "pix4d" / "pix4d_orthomosaic_alpha.tif", heading=40.0, side=40.0)
    results = gleam_geo.localize(query.pixels, index, crs="EPSG:3857", top_k=3)
    assert results["match_prob"].max() < 0.3


def test_refine_false_keeps_the_retrieval_columns(index):
    query = _view(DATA / "kampala" / "kampala_z20.tif", heading=0.0, side=38.4)
    results = gleam_geo.localize(query.pixels, index, top_k=3, refine=False)
    assert list(results.columns) == [
        "rank",
        "score",
        "geometry",
        "footprint",
        "chip_id",
        "source",
        "modality",
        "model",
        "query_path",
    ]
    unrefined = gleam_geo.localize(query.pixels, index, top_k=8, refine_top_k=1)
    assert np.isnan(unrefined["match_prob"].iloc[1:]).all() and (unrefined["inliers"].iloc[1:] == 0).all()


def test_bad_refine_arguments_raise(index):
    with pytest.raises(ValueError, match="refine_top_k"):
        gleam_geo.localize(np.zeros((64, 64, 3), np.uint8), index, refine_top_k=0)


def test_refiner_stops_at_the_first_confident_candidate(index):
    from gleam_geo.refine import Refiner

    query = _view(DATA / "kampala" / "kampala_z20.tif", heading=30.0, side=50.0)
    chips = index.chips(list(range(4)))
    scores = [0.5] * 4
    everything = Refiner(stop_prob=None).refine(query.pixels, chips, scores)
    first_confident = next(i for i, r in enumerate(everything) if r.match_prob >= 0.95)
    stopped = Refiner(stop_prob=0.95).refine(query.pixels, chips, scores)
    assert len(stopped) == first_confident + 1 < len(everything)
    expected = [r.match_prob for r in everything[: len(stopped)]]
    assert [r.match_prob for r in stopped] == pytest.approx(expected)


def test_refiner_rejects_a_bad_stop_prob():
    from gleam_geo.refine import Refiner

    with pytest.raises(ValueError, match="stop_prob"):
        Refiner(stop_prob=1.5)
