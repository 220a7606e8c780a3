"""Local feature matchers: keypoints and putative correspondences between two images.

A :class:`LocalMatcher` turns a query image and a reference patch into matched point
pairs (pixel coordinates, ``x`` right, ``y`` down). Geometric verification is separate
(:mod:`.geometry`), so any backend can be swapped in. The default is OpenCV SIFT with
Lowe's ratio test and a mutual-nearest-neighbour check: rotation- and scale-invariant,
no weights to download.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

__all__ = ["Features", "LocalMatcher", "Matches", "SiftMatcher", "to_gray"]


@dataclass
class Features:
    """Keypoints ``(N, 2)`` in pixels and their descriptors ``(N, D)`` float32.

    Attributes:
        points: keypoint positions, ``x`` right, ``y`` down.
        descriptors: one row per keypoint.
        image_size: ``(width, height)`` of the described image (pair matchers need it).
        views: features of the same image described at other headings (points in this
            image's pixels), for matchers that are not rotation-invariant; empty otherwise.
    """

    points: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int] | None = None
    views: tuple[Features, ...] = ()


@dataclass
class Matches:
    """Putative correspondences: ``query[i]`` matches ``reference[i]``, both ``(M, 2)`` pixels.

    Attributes:
        query: matched query keypoints.
        reference: matched reference keypoints.
    """

    query: np.ndarray
    reference: np.ndarray


@runtime_checkable
class LocalMatcher(Protocol):
    """Detects and matches local features between a query and a reference image."""

    name: str

    def features(self, image: np.ndarray) -> Features:
        """Detect keypoints and describe them in an RGB or grey uint8 image."""
        ...

    def query_features(self, image: np.ndarray) -> Features:
        """Features of the query image (may hold several headings as ``views``)."""
        ...

    def match(self, query: Features, reference: Features) -> Matches:
        """Match query features to reference features."""
        ...


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` or grey ``(H, W)`` uint8 to grey uint8."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


class SiftMatcher:
    """OpenCV SIFT (RootSIFT descriptors) with ratio test and mutual nearest neighbours.

    Args:
        max_features: keypoints kept per image (strongest first).
        ratio: Lowe's ratio threshold.
        contrast_threshold: SIFT's contrast threshold; lower finds more keypoints in flat areas.
    """

    name = "sift"

    def __init__(
        self, max_features: int = 2000, ratio: float = 0.85, contrast_threshold: float = 0.02
    ) -> None:
        self.max_features = max_features
        self.ratio = ratio
        self._sift = cv2.SIFT_create(nfeatures=max_features, contrastThreshold=contrast_threshold)
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))

    def features(self, image: np.ndarray) -> Features:
        """Detect SIFT keypoints on a contrast-equalised grey image; RootSIFT descriptors."""
        gray = self._clahe.apply(to_gray(image))
        keypoints, descriptors = self._sift.detectAndCompute(gray, None)
        if descriptors is None or len(keypoints) == 0:
            return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
        descriptors = descriptors / (np.abs(descriptors).sum(axis=1, keepdims=True) + 1e-7)
        points = np.array([kp.pt for kp in keypoints], dtype=np.float32)
        return Features(points, np.sqrt(descriptors).astype(np.float32))

    def query_features(self, image: np.ndarray) -> Features:
        """The same as :meth:`features`: SIFT is rotation-invariant."""
        return self.features(image)

    def match(self, query: Features, reference: Features) -> Matches:
        """Ratio-test matches from query to reference that are also mutual nearest neighbours."""
        empty = Matches(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
        if len(query.points) < 2 or len(reference.points) < 2:
            return empty
        similarity = query.descriptors @ reference.descriptors.T  # unit vectors: cos = 1 - d^2/2
        best_two = np.argpartition(-similarity, 1, axis=1)[:, :2]
        rows = np.arange(len(similarity))
        first, second = similarity[rows, best_two[:, 0]], similarity[rows, best_two[:, 1]]
        swap = second > first
        nearest = np.where(swap, best_two[:, 1], best_two[:, 0])
        d1 = np.sqrt(np.maximum(2 - 2 * np.maximum(first, second), 0))
        d2 = np.sqrt(np.maximum(2 - 2 * np.minimum(first, second), 0))
        mutual = similarity.argmax(axis=0)[nearest] == rows
        keep = (d1 < self.ratio * d2) & mutual
        if not keep.any():
            return empty
        return Matches(query.points[keep], reference.points[nearest[keep]])
