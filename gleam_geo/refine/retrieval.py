"""Rotation-robust retrieval: embed the query at several in-plane rotations, keep the best.

The retrieval encoders are not rotation-invariant, and a drone photo can have any
heading. Test-time augmentation searches the index with the query turned by each angle
and keeps, for every chip, its highest score over the rotations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..index import GeoIndex
from ..models import Encoder
from ..records import View

__all__ = ["rotated_views", "search_rotations"]


def rotated_views(image: np.ndarray, angles_deg: Sequence[float]) -> list[np.ndarray]:
    """The query turned counter-clockwise by each angle.

    Multiples of 90 degrees are exact; other angles keep the largest centred square
    that holds no fill.
    """
    views = []
    for angle in angles_deg:
        quarter = float(angle) / 90.0
        if quarter.is_integer():
            views.append(np.ascontiguousarray(np.rot90(image, int(quarter) % 4)))
            continue
        height, width = image.shape[:2]
        side = min(height, width)
        square = image[(height - side) // 2 : (height - side) // 2 + side, (width - side) // 2 :][:, :side]
        matrix = cv2.getRotationMatrix2D((side / 2, side / 2), float(angle), 1.0)
        turned = cv2.warpAffine(square, matrix, (side, side), flags=cv2.INTER_LINEAR)
        keep = int(side / (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle)))))
        start = (side - keep) // 2
        views.append(np.ascontiguousarray(turned[start : start + keep, start : start + keep]))
    return views


def search_rotations(
    index: GeoIndex,
    encoder: Encoder,
    image: np.ndarray,
    view: View,
    k: int,
    *,
    rotations: int = 4,
    region: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Search ``index`` with the query at ``rotations`` evenly spaced angles; max score per chip.

    Returns:
        ``(scores, ids)``, each 1-D, best first, at most ``k`` long.
    """
    if rotations < 1:
        raise ValueError(f"rotations must be at least 1, got {rotations}")
    angles = [360.0 * i / rotations for i in range(rotations)]
    vectors = encoder.embed_images(rotated_views(image, angles), view).astype(np.float32)
    scores, ids = index.search(vectors, k, region=region)
    best: dict[int, float] = {}
    for chip_id, score in zip(ids.ravel().tolist(), scores.ravel().tolist(), strict=True):
        if chip_id >= 0 and score > best.get(chip_id, -np.inf):
            best[chip_id] = score
    ranked = sorted(best.items(), key=lambda item: -item[1])[:k]
    return (
        np.array([score for _, score in ranked], dtype=np.float32),
        np.array([chip_id for chip_id, _ in ranked], dtype=np.int64),
    )
