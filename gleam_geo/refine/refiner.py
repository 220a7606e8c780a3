"""Coarse-to-fine: verify retrieved chips by local feature matching and place the query.

For each candidate chip, a reference patch around it (``margin`` times its side) is read
from the source raster at the chip's ground resolution; the query's local features are
matched against it, a homography is verified with RANSAC, and the query centre, outline,
heading, GSD and error radius are projected into the raster's CRS. A logistic
calibration turns the verification features into ``match_prob``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import pandas as pd
import rasterio

from ..raster import RasterSource, open_raster
from ..records import PixelWindow
from .calibration import Calibration, features, load_calibration
from .geometry import Projection, Verification, estimate_homography, project_query
from .matchers import Features, LocalMatcher, SiftMatcher
from .patch import ReferencePatch, read_patch

__all__ = ["Refinement", "Refiner"]


@dataclass
class Refinement:
    """The outcome of refining one candidate.

    Attributes:
        match_prob: calibrated probability that ``projection`` is the right place.
        features: the calibration features behind ``match_prob``.
        inliers: verified correspondences (0 when verification failed).
        projection: the query placed in ``crs``, or ``None`` when verification failed.
        crs: CRS of ``projection`` (the source raster's).
        verification: the homography and inlier points, for drawing.
        patch: the reference patch the query was matched against.
    """

    match_prob: float
    features: np.ndarray
    inliers: int
    projection: Projection | None
    crs: str
    verification: Verification | None = None
    patch: ReferencePatch | None = None


@lru_cache(maxsize=64)
def _source(path: str) -> RasterSource:
    return open_raster(path)


class Refiner:
    """Re-ranks retrieval candidates by geometric verification against the source rasters.

    Args:
        matcher: local feature backend, or its name (``sift``, ``xfeat``, ``lightglue``; see
            :func:`~gleam_geo.refine.learned_matchers.get_matcher`). Default: :class:`SiftMatcher`.
        calibration: match-probability model (default: the shipped one).
        margin: reference patch side over chip side.
        query_max_px: the query is downscaled so its longest side is at most this.
        min_inliers: fewest RANSAC inliers for a verified match.
        stop_prob: stop refining once a candidate reaches this ``match_prob`` (later candidates
            are returned unrefined); ``None`` refines every candidate.
        keep_images: keep the patch and inlier points in each result (for plots).
    """

    def __init__(
        self,
        matcher: LocalMatcher | str | None = None,
        calibration: Calibration | None = None,
        *,
        margin: float = 3.0,
        query_max_px: int = 384,
        min_inliers: int = 8,
        stop_prob: float | None = 0.95,
        keep_images: bool = False,
    ) -> None:
        if margin < 1:
            raise ValueError(f"margin must be at least 1 (the chip itself), got {margin}")
        if query_max_px < 32:
            raise ValueError(f"query_max_px must be at least 32, got {query_max_px}")
        if stop_prob is not None and not 0 < stop_prob <= 1:
            raise ValueError(f"stop_prob must be in (0, 1] or None, got {stop_prob}")
        if isinstance(matcher, str):
            from .learned_matchers import get_matcher

            matcher = get_matcher(matcher)
        self.matcher = matcher or SiftMatcher()
        self.calibration = calibration or load_calibration()
        self.margin = margin
        self.query_max_px = query_max_px
        self.min_inliers = min_inliers
        self.stop_prob = stop_prob
        self.keep_images = keep_images

    def _query_features(self, image: np.ndarray) -> tuple[Features, float]:
        """Features of the downscaled query, and the scale (resized px per original px)."""
        height, width = image.shape[:2]
        factor = min(1.0, self.query_max_px / max(height, width))
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return self.matcher.query_features(image), factor

    def refine(self, image: np.ndarray, chips: pd.DataFrame, scores: Sequence[float]) -> list[Refinement]:
        """Refine each chip row (``source``, ``crs``, window, ``gsd_m``) against the query ``image``.

        Args:
            image: the query, RGB uint8 ``(H, W, 3)``.
            chips: sidecar rows of the candidates (as from ``GeoIndex.chips``).
            scores: their retrieval scores, same order.

        Returns:
            One :class:`Refinement` per row refined, in the same order: all rows, or the rows
            up to the first whose ``match_prob`` reaches ``stop_prob``.
        """
        query, factor = self._query_features(image)
        height, width = image.shape[:2]
        scale = np.diag([factor, factor, 1.0])
        results = []
        for row, score in zip(chips.itertuples(index=False), scores, strict=True):
            source = _source(str(row.source))
            window = PixelWindow(int(row.col_off), int(row.row_off), int(row.width), int(row.height))
            with rasterio.open(source.path) as dataset:
                patch = read_patch(dataset, source, window, margin=self.margin, gsd_m=float(row.gsd_m))
            reference = self.matcher.features(patch.pixels)
            matches = self.matcher.match(query, reference)
            verification = estimate_homography(
                matches.query,
                matches.reference,
                (max(1, round(width * factor)), max(1, round(height * factor))),
                min_inliers=self.min_inliers,
            )
            if verification is None:
                x = features(0, 0.0, float(score), 0.0)
                prob = float(self.calibration.probability(x))
                results.append(Refinement(prob, x, 0, None, patch.crs, patch=self._kept(patch)))
                continue
            verification.homography = verification.homography @ scale
            verification.query_points = verification.query_points / factor
            projection = project_query(verification, (width, height), patch.transform, patch.metres_per_unit)
            x = features(verification.inliers, verification.inlier_ratio, float(score), verification.rms_px)
            results.append(
                Refinement(
                    match_prob=float(self.calibration.probability(x)),
                    features=x,
                    inliers=verification.inliers,
                    projection=projection,
                    crs=patch.crs,
                    verification=verification if self.keep_images else None,
                    patch=self._kept(patch),
                )
            )
            if self.stop_prob is not None and results[-1].match_prob >= self.stop_prob:
                break
        return results

    def _kept(self, patch: ReferencePatch) -> ReferencePatch | None:
        return patch if self.keep_images else None
