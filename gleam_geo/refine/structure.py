"""Structure search: find the query by the layout of its edges, when keypoints cannot.

Across years the land cover changes: lakes grow, water turns from dark to green, fields
change crop, and keypoint descriptors stop matching. The layout of edges (roads, field
borders, shores) changes much less. This search turns the query through a full circle at
its known ground resolution and correlates its doubled-angle gradient orientation field
(the same for a dark-to-bright and a bright-to-dark edge) with the reference's, by FFT,
over a whole search window; then it refines the best peak in angle and to a sub-pixel.

The query's ground resolution must be known (``query_gsd_m``): a search over scale as well
makes the correlation peaks of wrong places as high as the right one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.fft as sfft

from .matchers import to_gray

__all__ = ["STRUCTURE_FEATURES", "StructureMatch", "StructureSearch", "orientation_field"]

STRUCTURE_FEATURES: tuple[str, ...] = ("ncc", "peak_ratio")
"""Calibration features of a structure match: its correlation peak, and that peak over the
highest one found elsewhere (at least a query radius away, any angle)."""


def orientation_field(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Doubled-angle gradient orientation ``(2, H, W)`` float32, with a soft magnitude weight.

    ``(cos 2t, sin 2t)`` is the same for an edge of either contrast sign, so a shore or a
    field border matches whatever its brightness was in either image; the weight keeps
    faint texture from counting as much as a clear edge.
    """
    gray = cv2.GaussianBlur(to_gray(image).astype(np.float32), (0, 0), sigma)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    squared = np.maximum(gx * gx + gy * gy, 1e-6)
    magnitude = np.sqrt(squared)
    weight = magnitude / (magnitude + 2.0 * float(np.median(magnitude)) + 1e-3) / squared
    return np.stack([(gx * gx - gy * gy) * weight, 2.0 * gx * gy * weight]).astype(np.float32)


@dataclass
class StructureMatch:
    """The best place for the query in the reference.

    Attributes:
        ncc: normalised cross-correlation of the orientation fields at the peak (-1 to 1).
        peak_ratio: ``ncc`` over the highest peak at least a query radius away.
        angle_deg: counter-clockwise turn that brings the query onto the reference.
        centre_px: reference pixel ``(x, y)`` under the query centre.
        scale: reference pixels per query pixel.
    """

    ncc: float
    peak_ratio: float
    angle_deg: float
    centre_px: tuple[float, float]
    scale: float

    @property
    def features(self) -> np.ndarray:
        """Calibration features, in :data:`STRUCTURE_FEATURES` order."""
        return np.array([self.ncc, self.peak_ratio], dtype=np.float64)

    def homography(self, query_size: tuple[int, int]) -> np.ndarray:
        """3x3 similarity mapping query pixels ``(x, y)`` to reference pixels."""
        width, height = query_size
        theta = math.radians(self.angle_deg)
        # image axes point down, so a counter-clockwise turn on screen is -theta here
        rotation = self.scale * np.array(
            [[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]]
        )
        offset = np.array(self.centre_px) - rotation @ np.array([width / 2, height / 2])
        return np.array([[*rotation[0], offset[0]], [*rotation[1], offset[1]], [0.0, 0.0, 1.0]])


class _Correlator:
    """Masked normalised cross-correlation of 2-channel fields against one reference field."""

    def __init__(self, field: np.ndarray) -> None:
        self.height, self.width = field.shape[1:]
        self.shape = (sfft.next_fast_len(self.height, True), sfft.next_fast_len(self.width, True))
        self.field64 = field.astype(np.float64)
        self.spectrum = sfft.rfft2(field, self.shape)

    def _correlate(self, spectrum: np.ndarray, template: np.ndarray) -> np.ndarray:
        """Valid-mode correlation, summed over channels when ``spectrum`` has them."""
        product = spectrum * np.conj(sfft.rfft2(template, self.shape))
        out = sfft.irfft2(product.sum(0) if product.ndim == 3 else product, self.shape)
        side = template.shape[-1]
        return out[: self.height - side + 1, : self.width - side + 1]

    def variance(self, mask: np.ndarray) -> np.ndarray:
        """Summed over channels: the reference's variance under ``mask`` at each offset, times its area.

        Computed in float64 (a difference of large sums); offsets where the reference is flat
        (no data, open water: under 5% of the median variance) get NaN, so they never peak.
        """
        area = float(mask.sum())
        spectrum = sfft.rfft2(mask.astype(np.float64), self.shape)
        sums = [
            sfft.irfft2(sfft.rfft2(channel, self.shape) * np.conj(spectrum), self.shape)
            for channel in self.field64
        ]
        squares = [
            sfft.irfft2(sfft.rfft2(channel * channel, self.shape) * np.conj(spectrum), self.shape)
            for channel in self.field64
        ]
        side = mask.shape[-1]
        valid = (slice(0, self.height - side + 1), slice(0, self.width - side + 1))
        variance = sum(
            square[valid] - total[valid] ** 2 / area for total, square in zip(sums, squares, strict=True)
        )
        floor = 0.05 * float(np.median(variance))
        return np.where(variance > max(floor, 1e-12), variance, np.nan)

    def ncc(self, template: np.ndarray, variance: np.ndarray) -> np.ndarray:
        """NCC map of a masked, zero-mean template against the reference."""
        norm = float(np.sqrt((template * template).sum()))
        return np.nan_to_num(
            self._correlate(self.spectrum, template) / (max(norm, 1e-9) * np.sqrt(variance)), nan=-1.0
        )


def _disk(side: int) -> np.ndarray:
    centre = (side - 1) / 2
    rows, cols = np.mgrid[:side, :side]
    return (((rows - centre) ** 2 + (cols - centre) ** 2) <= (side / 2 - 1) ** 2).astype(np.float32)


class StructureSearch:
    """Search one reference image for a query by orientation-field correlation.

    Args:
        reference: RGB or grey uint8 image the query is looked for in.
        angle_step_deg: step of the full-circle search; the best angle is then refined
            to 1 degree.
    """

    def __init__(self, reference: np.ndarray, *, angle_step_deg: float = 5.0) -> None:
        if not 0 < angle_step_deg <= 45:
            raise ValueError(f"angle_step_deg must be in (0, 45], got {angle_step_deg}")
        self.field = orientation_field(reference)
        self.correlator = _Correlator(self.field)
        self.angle_step_deg = angle_step_deg

    def _template(self, query: np.ndarray, side: int, angle_deg: float, mask: np.ndarray) -> np.ndarray:
        """The query's field, turned counter-clockwise by ``angle_deg``, inside the disk, zero-mean."""
        centre = ((side - 1) / 2, (side - 1) / 2)
        matrix = cv2.getRotationMatrix2D(centre, angle_deg, 1.0)
        turned = cv2.warpAffine(
            query, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        template = orientation_field(turned) * mask
        template -= template.sum((1, 2), keepdims=True) / mask.sum() * mask
        return template

    def search(self, query: np.ndarray, scale: float) -> StructureMatch | None:
        """Find ``query`` (RGB or grey uint8) at ``scale`` reference pixels per query pixel.

        The centred square of the query is used, inside its inscribed disk, so every angle
        sees the same ground. Returns ``None`` when the query is too small (under 16 px
        at the reference's resolution), larger than the reference, or so close to its size
        that less than a query's area of offsets lies a query radius away from the best one
        (the peak ratio would have no background to compare with).
        """
        height, width = query.shape[:2]
        square = min(height, width)
        side = round(square * scale)
        if side < 16 or side > min(self.correlator.height, self.correlator.width):
            return None
        top, left = (height - square) // 2, (width - square) // 2
        resized = cv2.resize(
            query[top : top + square, left : left + square], (side, side), interpolation=cv2.INTER_AREA
        )
        mask = _disk(side)
        variance = self.correlator.variance(mask)
        best_score = np.full(variance.shape, -np.inf, dtype=np.float64)
        best_angle = np.zeros(variance.shape, dtype=np.float32)
        for angle in np.arange(0.0, 360.0, self.angle_step_deg):
            score = self.correlator.ncc(self._template(resized, side, float(angle), mask), variance)
            better = score > best_score
            best_score[better] = score[better]
            best_angle[better] = angle
        row, col = np.unravel_index(int(np.argmax(best_score)), best_score.shape)
        rows, cols = np.ogrid[: best_score.shape[0], : best_score.shape[1]]
        elsewhere = ((rows - row) ** 2 + (cols - col) ** 2 > (side / 2) ** 2) & np.isfinite(best_score)
        if elsewhere.sum() < math.pi * (side / 2) ** 2:
            return None  # less than a query's area elsewhere: no background to judge the peak against
        second = float(best_score[elsewhere].max())
        return self._refine(
            resized, mask, float(best_angle[row, col]), int(col), int(row), second, side / square
        )

    def _refine(
        self,
        resized: np.ndarray,
        mask: np.ndarray,
        angle: float,
        col: int,
        row: int,
        second: float,
        scale: float,
    ) -> StructureMatch:
        """Refine the peak at ``(col, row)`` to 1 degree and a sub-pixel offset, on a local crop."""
        side = resized.shape[0]
        pad = max(4, math.ceil(self.angle_step_deg / 180 * math.pi * side / 2))
        top, left = max(0, row - pad), max(0, col - pad)
        crop = self.field[:, top : row + pad + side, left : col + pad + side]
        local = _Correlator(crop)
        variance = local.variance(mask)
        best = (-np.inf, angle, 0, 0, None)
        half = self.angle_step_deg / 2
        for fine in np.arange(angle - half, angle + half + 1e-6, 1.0):
            score = local.ncc(self._template(resized, side, float(fine), mask), variance)
            r, c = np.unravel_index(int(np.argmax(score)), score.shape)
            if score[r, c] > best[0]:
                best = (float(score[r, c]), float(fine), int(r), int(c), score)
        ncc, fine_angle, r, c, score = best
        dy, dx = _subpixel(score, r, c)
        centre = (left + c + dx + side / 2, top + r + dy + side / 2)
        return StructureMatch(
            ncc=ncc,
            peak_ratio=ncc / max(second, 1e-3),
            angle_deg=fine_angle % 360.0,
            centre_px=centre,
            scale=scale,
        )


def _subpixel(score: np.ndarray, row: int, col: int) -> tuple[float, float]:
    """Parabolic sub-pixel offset of a peak, along each axis (0 at the border)."""

    def offset(before: float, at: float, after: float) -> float:
        curvature = before - 2 * at + after
        return float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0

    height, width = score.shape
    dy = offset(score[row - 1, col], score[row, col], score[row + 1, col]) if 0 < row < height - 1 else 0.0
    dx = offset(score[row, col - 1], score[row, col], score[row, col + 1]) if 0 < col < width - 1 else 0.0
    return dy, dx
