"""Geometric verification and projection of a query into map coordinates.

:func:`estimate_homography` fits a query-to-reference homography with RANSAC (MAGSAC++)
and rejects implausible ones (mirrored, too anisotropic, scale outside a range).
:func:`project_query` maps the query's centre and outline through that homography and
the reference patch's geotransform, and derives heading, ground sampling distance and an
error radius from the local Jacobian and the inlier residuals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import shapely
from affine import Affine

__all__ = ["Projection", "Verification", "estimate_homography", "project_query"]

_MAX_ANISOTROPY = 3.0  # largest ratio of the Jacobian's singular values (a 45 deg tilt gives ~1.4)
_ERROR_SCALE = 3.0  # multiplier turning the centre's standard error into a ~90% radius


@dataclass
class Verification:
    """A verified query-to-reference homography.

    Attributes:
        homography: 3x3 matrix mapping query pixels to reference pixels.
        inliers: number of RANSAC inliers.
        inlier_ratio: inliers over putative matches.
        rms_px: root-mean-square reprojection error of the inliers, in reference pixels.
        query_points: the inlier query points ``(N, 2)``.
        reference_points: the inlier reference points ``(N, 2)``.
    """

    homography: np.ndarray
    inliers: int
    inlier_ratio: float
    rms_px: float
    query_points: np.ndarray
    reference_points: np.ndarray


@dataclass
class Projection:
    """The query placed on the map.

    Attributes:
        point: the query image centre in the map CRS.
        footprint: the query outline in the map CRS.
        heading_deg: direction of the image's "up" in degrees clockwise from grid north.
        gsd_m: ground size of one query pixel at its centre, metres.
        error_radius_m: radius around ``point`` that holds the true position about 9 times in 10.
    """

    point: shapely.Point
    footprint: shapely.Polygon
    heading_deg: float
    gsd_m: float
    error_radius_m: float


def _jacobian(homography: np.ndarray, x: float, y: float) -> np.ndarray:
    """Derivative of the homography at query pixel ``(x, y)``: 2x2."""
    h = homography
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    u = h[0, 0] * x + h[0, 1] * y + h[0, 2]
    v = h[1, 0] * x + h[1, 1] * y + h[1, 2]
    return np.array(
        [
            [(h[0, 0] * w - u * h[2, 0]) / w**2, (h[0, 1] * w - u * h[2, 1]) / w**2],
            [(h[1, 0] * w - v * h[2, 0]) / w**2, (h[1, 1] * w - v * h[2, 1]) / w**2],
        ]
    )


def _apply(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), homography).reshape(-1, 2)


def estimate_homography(
    query_points: np.ndarray,
    reference_points: np.ndarray,
    query_size: tuple[int, int],
    *,
    threshold_px: float = 4.0,
    min_inliers: int = 8,
    scale_range: tuple[float, float] = (0.1, 10.0),
) -> Verification | None:
    """Fit and sanity-check a homography from query to reference points.

    Args:
        query_points: matched query pixels ``(M, 2)``.
        reference_points: matched reference pixels ``(M, 2)``.
        query_size: ``(width, height)`` of the query image.
        threshold_px: RANSAC inlier threshold in reference pixels.
        min_inliers: fewest inliers accepted.
        scale_range: accepted reference-pixels-per-query-pixel at the query centre.

    Returns:
        The verification, or ``None`` when no plausible homography has enough inliers.
    """
    if len(query_points) < max(min_inliers, 4):
        return None
    homography, mask = cv2.findHomography(
        query_points.astype(np.float64),
        reference_points.astype(np.float64),
        cv2.USAC_MAGSAC,
        threshold_px,
        maxIters=2000,
        confidence=0.999,
    )
    if homography is None or mask is None:
        return None
    inlier = mask.ravel().astype(bool)
    if inlier.sum() < min_inliers:
        return None
    width, height = query_size
    jacobian = _jacobian(homography, width / 2, height / 2)
    singular = np.linalg.svd(jacobian, compute_uv=False)
    if np.linalg.det(jacobian) <= 0 or singular[0] > _MAX_ANISOTROPY * singular[1]:
        return None
    scale = math.sqrt(singular[0] * singular[1])
    if not scale_range[0] <= scale <= scale_range[1]:
        return None
    corners = _apply(homography, np.array([[0, 0], [width, 0], [width, height], [0, height]], float))
    if not shapely.Polygon(corners).is_valid:
        return None
    q, r = query_points[inlier], reference_points[inlier]
    residual = np.linalg.norm(_apply(homography, q) - r, axis=1)
    return Verification(
        homography=homography,
        inliers=int(inlier.sum()),
        inlier_ratio=float(inlier.mean()),
        rms_px=float(np.sqrt(np.mean(residual**2))),
        query_points=q,
        reference_points=r,
    )


def project_query(
    verification: Verification,
    query_size: tuple[int, int],
    reference_transform: Affine,
    metres_per_unit: float,
    *,
    error_radius_m: float | None = None,
) -> Projection:
    """Place the query on the map through the verified homography.

    Args:
        verification: the query-to-reference homography.
        query_size: ``(width, height)`` of the query image.
        reference_transform: reference patch pixel (corner) to map CRS coordinates.
        metres_per_unit: true metres per map CRS unit at the patch (1 for UTM, ~1/cos(lat)
            inverse for web-mercator).
        error_radius_m: the error radius when the caller knows it (a match without
            inliers); by default it comes from the inlier count and residuals.
    """
    width, height = query_size
    to_map = _affine_matrix(reference_transform) @ verification.homography
    centre = _apply(to_map, np.array([[width / 2, height / 2]]))[0]
    outline = _apply(to_map, np.array([[0, 0], [width, 0], [width, height], [0, height]], float))
    jacobian = _jacobian(to_map, width / 2, height / 2)
    up = jacobian @ np.array([0.0, -1.0])
    heading = math.degrees(math.atan2(up[0], up[1])) % 360.0
    gsd = math.sqrt(abs(np.linalg.det(jacobian))) * metres_per_unit
    if error_radius_m is None:
        reference_gsd = math.sqrt(abs(reference_transform.determinant)) * metres_per_unit
        standard_error_px = max(verification.rms_px, 0.5) * math.sqrt(4.0 / verification.inliers)
        error_radius_m = reference_gsd * (1.0 + _ERROR_SCALE * standard_error_px)
    return Projection(
        point=shapely.Point(centre),
        footprint=shapely.Polygon(outline),
        heading_deg=heading,
        gsd_m=gsd,
        error_radius_m=error_radius_m,
    )


def _affine_matrix(transform: Affine) -> np.ndarray:
    """The 3x3 matrix of an affine geotransform."""
    return np.array(
        [[transform.a, transform.b, transform.c], [transform.d, transform.e, transform.f], [0, 0, 1]]
    )
