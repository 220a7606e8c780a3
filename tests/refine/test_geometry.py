import math

import numpy as np
import pytest
from affine import Affine

from gleam_geo.refine import estimate_homography, project_query


def _similarity(points, angle_deg, scale, shift):
    t = math.radians(angle_deg)
    rotation = scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return points @ rotation.T + shift


@pytest.fixture
def grid_points():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 200, size=(120, 2))


def test_recovers_similarity_with_outliers(grid_points):
    reference = _similarity(grid_points, 30, 1.5, np.array([50.0, 20.0]))
    reference[:30] = np.random.default_rng(1).uniform(0, 400, size=(30, 2))  # 25% outliers
    verification = estimate_homography(grid_points, reference, (200, 200))
    assert verification is not None
    assert 85 <= verification.inliers <= 92
    assert verification.rms_px < 0.5


def test_projection_gives_centre_heading_and_gsd(grid_points):
    # query turned so that its "up" points east on the map; 1 query px = 2 reference px
    reference = _similarity(grid_points, -90, 2.0, np.array([100.0, 500.0]))
    verification = estimate_homography(grid_points, reference, (200, 200))
    patch = Affine(0.5, 0, 1000.0, 0, -0.5, 2000.0)  # 0.5 m reference pixels, north-up
    projection = project_query(verification, (200, 200), patch, metres_per_unit=1.0)
    centre_ref = _similarity(np.array([[100.0, 100.0]]), -90, 2.0, np.array([100.0, 500.0]))[0]
    expected = (patch.a * centre_ref[0] + patch.c, patch.e * centre_ref[1] + patch.f)
    assert projection.point.x == pytest.approx(expected[0], abs=1e-3)
    assert projection.point.y == pytest.approx(expected[1], abs=1e-3)
    assert projection.gsd_m == pytest.approx(1.0, rel=1e-3)
    # image up (0,-1) -> reference (-1, 0) * 2 -> map west; heading 270
    assert projection.heading_deg == pytest.approx(270.0, abs=0.1)
    assert projection.footprint.area == pytest.approx(200.0**2, rel=1e-3)
    assert 0 < projection.error_radius_m < 2


def test_rejects_mirrored_and_too_few(grid_points):
    mirrored = grid_points * np.array([-1.0, 1.0]) + 300
    assert estimate_homography(grid_points, mirrored, (200, 200)) is None
    assert estimate_homography(grid_points[:5], grid_points[:5], (200, 200)) is None


def test_rejects_implausible_scale(grid_points):
    tiny = grid_points * 0.01
    assert estimate_homography(grid_points, tiny, (200, 200)) is None
