"""Coarse-to-fine: verify retrieved chips by local feature matching and place the query.

For each candidate chip, a reference patch around it (``margin`` times its side) is read
from the source raster at the chip's ground resolution; the query's local features are
matched against it, a homography is verified with RANSAC, and the query centre, outline,
heading, GSD and error radius are projected into the raster's CRS. A logistic
calibration turns the verification features into ``match_prob``.

When no candidate verifies and the query's ground resolution is known, a structure search
(:mod:`.structure`) looks for the query's edge layout over a window around the candidates:
it finds places whose land cover changed too much for keypoints (e.g. years apart), and
has its own calibration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import rasterio
import shapely
from pyproj import Transformer

from ..raster import RasterSource, open_raster
from ..records import PixelWindow
from .calibration import Calibration, features, load_calibration
from .geometry import Projection, Verification, estimate_homography, project_query
from .matchers import Features, LocalMatcher, SiftMatcher
from .patch import ReferencePatch, read_patch
from .structure import STRUCTURE_FEATURES, StructureSearch

__all__ = [
    "STRUCTURE_RADIUS_PX",
    "Refinement",
    "Refiner",
    "load_structure_calibration",
    "structure_search_gsd",
]

_STRUCTURE_CALIBRATION = Path(__file__).with_name("structure_calibration.json")
_STRUCTURE_TEMPLATE_PX = 160  # query side at the structure search's resolution
STRUCTURE_RADIUS_PX = 3.0
"""Error radius of a structure match, in search pixels (sized by benchmarks/structure_calibration.py)."""
_STRUCTURE_SOURCES = 2  # rasters searched at most, in retrieval order


def load_structure_calibration(path: str | Path | None = None) -> Calibration:
    """The structure search's ``match_prob`` calibration (default: the shipped one)."""
    return load_calibration(path or _STRUCTURE_CALIBRATION, STRUCTURE_FEATURES)


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
        method: ``keypoints`` (local features and RANSAC) or ``structure`` (edge-layout search).
    """

    match_prob: float
    features: np.ndarray
    inliers: int
    projection: Projection | None
    crs: str
    verification: Verification | None = None
    patch: ReferencePatch | None = None
    method: str = "keypoints"


def structure_search_gsd(image: np.ndarray, query_gsd_m: float, source: RasterSource) -> float:
    """Metres per pixel the structure search reads ``source`` at (never finer than the raster)."""
    return max(query_gsd_m * min(image.shape[:2]) / _STRUCTURE_TEMPLATE_PX, source.gsd_m)


def _elsewhere(other: Projection, other_crs: str, best: Projection, best_crs: str) -> bool:
    """Whether ``other``'s centre lies outside ``best``'s footprint (compared in ``best_crs``)."""
    x, y = other.point.x, other.point.y
    if other_crs != best_crs:
        x, y = Transformer.from_crs(other_crs, best_crs, always_xy=True).transform(x, y)
    return not best.footprint.contains(shapely.Point(x, y))


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
        structure: search by edge layout when no candidate verifies and the query's ground
            resolution is given (see :meth:`refine`).
        structure_calibration: its match-probability model (default: the shipped one).
        structure_window_px: side of the structure search window, in search pixels (about
            160 per query side); it is centred on the candidates and clipped to the raster.
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
        structure: bool = True,
        structure_calibration: Calibration | None = None,
        structure_window_px: int = 1024,
    ) -> None:
        if margin < 1:
            raise ValueError(f"margin must be at least 1 (the chip itself), got {margin}")
        if query_max_px < 32:
            raise ValueError(f"query_max_px must be at least 32, got {query_max_px}")
        if stop_prob is not None and not 0 < stop_prob <= 1:
            raise ValueError(f"stop_prob must be in (0, 1] or None, got {stop_prob}")
        if structure_window_px < 2 * _STRUCTURE_TEMPLATE_PX:
            raise ValueError(
                f"structure_window_px must be at least {2 * _STRUCTURE_TEMPLATE_PX}, "
                f"got {structure_window_px}"
            )
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
        self.structure = structure
        self.structure_calibration = structure_calibration or load_structure_calibration()
        self.structure_window_px = structure_window_px

    def _query_features(self, image: np.ndarray) -> tuple[Features, float]:
        """Features of the downscaled query, and the scale (resized px per original px)."""
        height, width = image.shape[:2]
        factor = min(1.0, self.query_max_px / max(height, width))
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return self.matcher.query_features(image), factor

    def refine(
        self,
        image: np.ndarray,
        chips: pd.DataFrame,
        scores: Sequence[float],
        *,
        query_gsd_m: float | None = None,
    ) -> list[Refinement]:
        """Refine each chip row (``source``, ``crs``, window, ``gsd_m``) against the query ``image``.

        Args:
            image: the query, RGB uint8 ``(H, W, 3)``.
            chips: sidecar rows of the candidates (as from ``GeoIndex.chips``).
            scores: their retrieval scores, same order.
            query_gsd_m: ground size of one query pixel (a nadir view), when known (from the
                flight altitude and camera, or a georeferenced image); it enables the
                structure search when no candidate verifies.

        Returns:
            One :class:`Refinement` per row refined, in the same order: all rows, or the rows
            up to the first whose ``match_prob`` reaches ``stop_prob``. A structure match
            replaces the refinement of the candidate chip nearest to it, when it is more
            probable.
        """
        if query_gsd_m is not None and not (math.isfinite(query_gsd_m) and query_gsd_m > 0):
            raise ValueError(f"query_gsd_m must be a positive number of metres, got {query_gsd_m}")
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
        if (
            self.structure
            and query_gsd_m is not None
            and results
            and max(r.match_prob for r in results) < 0.5
        ):
            self._structure_fallback(image, chips.iloc[: len(results)], query_gsd_m, results)
        return results

    def _structure_fallback(
        self, image: np.ndarray, chips: pd.DataFrame, query_gsd_m: float, results: list[Refinement]
    ) -> None:
        """Search the candidates' rasters by edge layout; put the best match in ``results``.

        The best match's peak ratio is taken against the other rasters' peaks as well (those
        outside its footprint: one inside is the same place at another date), so searching
        more places does not make a chance peak look more certain.
        """
        found: list[Refinement] = []
        for path in list(dict.fromkeys(chips["source"].astype(str)))[:_STRUCTURE_SOURCES]:
            source = _source(path)
            gsd = structure_search_gsd(image, query_gsd_m, source)
            window = self._structure_window(source, chips[chips["source"].astype(str) == path], gsd)
            refinement = self.search_structure(image, source, window, query_gsd_m)
            if refinement is not None and refinement.projection is not None:
                found.append(refinement)
        if not found:
            return
        best = max(found, key=lambda refinement: refinement.match_prob)
        rivals = [
            float(other.features[0])
            for other in found
            if other is not best and _elsewhere(other.projection, other.crs, best.projection, best.crs)
        ]
        if rivals:
            ncc, ratio = (float(value) for value in best.features[:2])
            features = np.array([ncc, min(ratio, ncc / max(rivals))])
            best = replace(
                best, features=features, match_prob=float(self.structure_calibration.probability(features))
            )
        point = best.projection.point
        centres = [shapely.from_wkt(wkt).centroid for wkt in chips["native_footprint"]]
        distances = [
            point.distance(centre) if crs == best.crs else math.inf
            for centre, crs in zip(centres, chips["crs"].astype(str), strict=True)
        ]
        nearest = int(np.argmin(distances))
        if best.match_prob > results[nearest].match_prob:
            results[nearest] = best

    def search_structure(
        self, image: np.ndarray, source: RasterSource, window: PixelWindow, query_gsd_m: float
    ) -> Refinement | None:
        """Search ``window`` of ``source`` for the query by edge layout (see :mod:`.structure`).

        The window is read at about 160 pixels per query side (never finer than the raster).
        Returns ``None`` when the query does not fit in the window.
        """
        height, width = image.shape[:2]
        gsd = structure_search_gsd(image, query_gsd_m, source)
        with rasterio.open(source.path) as dataset:
            patch = read_patch(dataset, source, window, margin=1.0, gsd_m=gsd)
        match = StructureSearch(patch.pixels).search(image, query_gsd_m / gsd)
        if match is None:
            return None
        verification = Verification(
            match.homography((width, height)), 0, 0.0, 0.0, np.empty((0, 2)), np.empty((0, 2))
        )
        projection = project_query(
            verification, (width, height), patch.transform, patch.metres_per_unit,
            error_radius_m=gsd * STRUCTURE_RADIUS_PX,
        )  # fmt: skip
        return Refinement(
            match_prob=float(self.structure_calibration.probability(match.features)),
            features=match.features,
            inliers=0,
            projection=projection,
            crs=patch.crs,
            verification=verification if self.keep_images else None,
            patch=self._kept(patch),
            method="structure",
        )

    def _structure_window(self, source: RasterSource, rows: pd.DataFrame, gsd_m: float) -> PixelWindow:
        """A square of ``structure_window_px`` pixels at ``gsd_m``, centred on the rows' chips."""
        side = min(round(self.structure_window_px * gsd_m / source.gsd_m), max(source.width, source.height))
        cx = float(np.mean(rows["col_off"] + rows["width"] / 2))
        cy = float(np.mean(rows["row_off"] + rows["height"] / 2))
        col0 = int(np.clip(round(cx - side / 2), 0, max(0, source.width - side)))
        row0 = int(np.clip(round(cy - side / 2), 0, max(0, source.height - side)))
        return PixelWindow(col0, row0, min(side, source.width - col0), min(side, source.height - row0))

    def _kept(self, patch: ReferencePatch) -> ReferencePatch | None:
        return patch if self.keep_images else None
