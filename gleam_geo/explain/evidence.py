"""Measure the evidence for one (query, reference chip) pair from its refinement.

Everything here is measured, not guessed: the retrieval score and its margin, the
verified keypoint matches (count, ratio, how much of the photo they cover), the geometry
the homography implies (scale, heading, how far it departs from a nadir view) and how
well colour and edge structure agree once the reference patch is warped onto the photo
with that homography. When verification failed, the geometric and appearance fields
stay ``None`` and ``inliers`` is 0. A position found by the structure search (edge layout,
no keypoints) carries its peak correlation and peak ratio, its geometry and the
appearance measured through its similarity transform.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..refine import LocalMatcher, Refinement
from .base import Evidence

__all__ = ["appearance_agreement", "measure_evidence"]

_WORK_PX = 256  # appearance is compared at this size (longest side of the query)
_MIN_OVERLAP = 0.05  # share of the query the warped reference must cover to compare appearance
_HIST_BINS = 16  # per axis of the Lab (a, b) chroma histogram


def _scale_matrix(factor: float) -> np.ndarray:
    return np.diag([factor, factor, 1.0])


def _jacobian_at(homography: np.ndarray, x: float, y: float) -> np.ndarray:
    """Derivative of ``homography`` at ``(x, y)`` (2x2), by central differences."""
    eps = 0.5
    points = np.array([[x - eps, y], [x + eps, y], [x, y - eps], [x, y + eps]], np.float64)
    mapped = cv2.perspectiveTransform(points.reshape(-1, 1, 2), homography).reshape(-1, 2)
    return np.column_stack([(mapped[1] - mapped[0]) / (2 * eps), (mapped[3] - mapped[2]) / (2 * eps)])


def _hull_share(points: np.ndarray, width: int, height: int) -> float:
    """Area of the convex hull of ``points`` over the image area (0-1)."""
    if len(points) < 3:
        return 0.0
    hull = cv2.convexHull(points.astype(np.float32).reshape(-1, 1, 2))
    return float(min(1.0, cv2.contourArea(hull) / max(width * height, 1)))


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two equal-length vectors; ``None`` when either is constant."""
    a, b = a.astype(np.float64) - a.mean(), b.astype(np.float64) - b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / denominator) if denominator > 1e-9 else None


def _chroma_histogram(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    hist = cv2.calcHist([lab], [1, 2], mask, [_HIST_BINS, _HIST_BINS], [0, 256, 0, 256])
    return hist.ravel() / max(float(hist.sum()), 1.0)


def _gradient_magnitude(image: np.ndarray) -> np.ndarray:
    grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def appearance_agreement(
    query: np.ndarray, reference: np.ndarray, homography: np.ndarray
) -> tuple[float | None, float | None]:
    """Colour and structure agreement of ``query`` and ``reference`` warped onto it.

    Args:
        query: the photo, RGB uint8 ``(H, W, 3)``.
        reference: the reference patch, RGB uint8.
        homography: maps query pixels to reference pixels.

    Returns:
        ``(colour, structure)``: the correlation of the Lab chroma histograms over the
        overlap, and the correlation of the gradient magnitudes pixel by pixel (each -1 to
        1, ``None`` when the overlap is too small or flat).
    """
    height, width = query.shape[:2]
    factor = min(1.0, _WORK_PX / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = cv2.resize(query, size, interpolation=cv2.INTER_AREA) if factor < 1 else query
    to_reference = homography @ _scale_matrix(1.0 / factor)  # small-query pixels -> reference pixels
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(reference, to_reference, size, flags=flags)
    inside = np.full(reference.shape[:2], 255, np.uint8)
    mask = cv2.warpPerspective(inside, to_reference, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8))  # drop the blurred rim of the warp
    valid = mask > 0
    if valid.mean() < _MIN_OVERLAP:
        return None, None
    colour = _correlation(_chroma_histogram(small, mask), _chroma_histogram(warped, mask))
    structure = _correlation(_gradient_magnitude(small)[valid], _gradient_magnitude(warped)[valid])
    return colour, structure


def _putative_matches(query: np.ndarray, reference: np.ndarray, matcher: LocalMatcher, max_px: int) -> int:
    """How many putative matches ``matcher`` finds between the (downscaled) query and ``reference``."""
    height, width = query.shape[:2]
    factor = min(1.0, max_px / max(height, width))
    if factor < 1:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        query = cv2.resize(query, size, interpolation=cv2.INTER_AREA)
    return len(matcher.match(matcher.query_features(query), matcher.features(reference)).query)


def measure_evidence(
    query: np.ndarray,
    refinement: Refinement,
    *,
    retrieval_score: float | None = None,
    score_margin: float | None = None,
    matcher: LocalMatcher | None = None,
    query_max_px: int = 384,
) -> Evidence:
    """Measure the :class:`Evidence` of one refined pair.

    Args:
        query: the photo, RGB uint8 ``(H, W, 3)`` at the size it was refined at.
        refinement: the chip's refinement, run with ``keep_images=True`` (its patch and
            verification are needed for the geometric and appearance measures).
        retrieval_score: the chip's retrieval score, when known.
        score_margin: that score minus the strongest other candidate's, when known.
        matcher: the refiner's matcher; when verification failed, it is run again to count
            the putative matches that did not verify.
        query_max_px: the query size the refiner matched at (its ``query_max_px``).

    Returns:
        The evidence; geometric and appearance fields are ``None`` when verification failed.
    """
    base = {
        "retrieval_score": retrieval_score,
        "score_margin": score_margin,
        "match_prob": float(refinement.match_prob),
    }
    verification, projection, patch = refinement.verification, refinement.projection, refinement.patch
    if refinement.method == "structure":
        return _structure_evidence(query, refinement, base)
    if verification is None or projection is None or refinement.inliers == 0:
        putative = 0
        if matcher is not None and patch is not None:
            putative = _putative_matches(query, patch.pixels, matcher, query_max_px)
        return Evidence(**base, putative_matches=putative)
    height, width = query.shape[:2]
    jacobian = _jacobian_at(verification.homography, width / 2, height / 2)
    singular = np.linalg.svd(jacobian, compute_uv=False)
    colour = structure = scale_ratio = None
    if patch is not None:
        colour, structure = appearance_agreement(query, patch.pixels, verification.homography)
        reference_gsd = math.sqrt(abs(patch.transform.determinant)) * patch.metres_per_unit
        scale_ratio = projection.gsd_m / reference_gsd if reference_gsd > 0 else None
    putative = round(verification.inliers / verification.inlier_ratio) if verification.inlier_ratio else 0
    return Evidence(
        **base,
        inliers=int(verification.inliers),
        putative_matches=int(putative),
        inlier_ratio=float(verification.inlier_ratio),
        inlier_spread=_hull_share(verification.query_points, width, height),
        reprojection_rms_px=float(verification.rms_px),
        scale_ratio=scale_ratio,
        heading_deg=float(projection.heading_deg),
        tilt_anisotropy=float(singular[0] / max(singular[1], 1e-12)),
        colour_agreement=colour,
        structure_agreement=structure,
        gsd_m=float(projection.gsd_m),
        error_radius_m=float(projection.error_radius_m),
    )


def _structure_evidence(query: np.ndarray, refinement: Refinement, base: dict[str, float | None]) -> Evidence:
    """Evidence for a structure-search position: its peak, its geometry and the appearance through it."""
    ncc, peak_ratio = (float(value) for value in refinement.features[:2])
    measured: dict[str, float | None] = {}
    if refinement.projection is not None:
        measured["heading_deg"] = float(refinement.projection.heading_deg)
        measured["gsd_m"] = float(refinement.projection.gsd_m)
        measured["error_radius_m"] = float(refinement.projection.error_radius_m)
    verification, patch = refinement.verification, refinement.patch
    if verification is not None and patch is not None:
        colour, structure = appearance_agreement(query, patch.pixels, verification.homography)
        measured["colour_agreement"], measured["structure_agreement"] = colour, structure
    return Evidence(
        **base, **measured, method="structure", structure_ncc=ncc, structure_peak_ratio=peak_ratio
    )
