"""A figure per explained pair: the photo and the reference side by side, matches drawn.

The left panel is the query photo, the right the reference patch it was matched
against; verified inlier matches are drawn as lines between them, the chip's own window
as a thin grey square on the reference, and the photo's outline projected through the
homography as a green polygon. Labels are ASCII (OpenCV's fonts), numbers included.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..io.atomic import atomic_path
from .base import Explanation

__all__ = ["draw_pair", "write_figure"]

_PANEL_PX = 360  # height of each panel
_BANNER_PX = 44
_MAX_LINES = 80
_GREEN = (40, 220, 60)
_RED = (230, 50, 50)
_GREY = (200, 200, 200)


def _fit(image: np.ndarray) -> tuple[np.ndarray, float]:
    """``image`` scaled to the panel height, and the scale applied."""
    scale = _PANEL_PX / image.shape[0]
    size = (max(1, round(image.shape[1] * scale)), _PANEL_PX)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), size, interpolation=interpolation), scale


def _polygon(canvas: np.ndarray, points: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    pts = np.round(points).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], isClosed=True, color=colour, thickness=thickness, lineType=cv2.LINE_AA)


def draw_pair(
    query: np.ndarray,
    reference: np.ndarray,
    *,
    homography: np.ndarray | None = None,
    query_points: np.ndarray | None = None,
    reference_points: np.ndarray | None = None,
    chip_box: np.ndarray | None = None,
    caption: str = "",
) -> np.ndarray:
    """Render the pair as one RGB image.

    Args:
        query: the photo, RGB uint8.
        reference: the reference patch, RGB uint8.
        homography: query pixels to reference pixels, when verified.
        query_points: inlier points in the photo ``(N, 2)``.
        reference_points: the matching points in the reference ``(N, 2)``.
        chip_box: the chip's corners in reference pixels ``(4, 2)``.
        caption: a line of ASCII text for the banner.

    Returns:
        The figure, RGB uint8.
    """
    left, left_scale = _fit(query)
    right, right_scale = _fit(reference)
    gap = 8
    canvas = np.full((_PANEL_PX + _BANNER_PX, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    canvas[_BANNER_PX:, : left.shape[1]] = left
    offset = np.array([left.shape[1] + gap, _BANNER_PX], float)
    canvas[_BANNER_PX:, left.shape[1] + gap :] = right
    if chip_box is not None:
        _polygon(canvas, chip_box * right_scale + offset, _GREY, 1)
    if homography is not None:
        height, width = query.shape[:2]
        corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
        outline = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), homography).reshape(-1, 2)
        _polygon(canvas, outline * right_scale + offset, _GREEN, 2)
        _polygon(canvas, corners * left_scale + [0, _BANNER_PX], _GREEN, 2)
    if query_points is not None and reference_points is not None and len(query_points):
        step = max(1, len(query_points) // _MAX_LINES)
        for q, r in zip(query_points[::step], reference_points[::step], strict=True):
            a = tuple(np.round(q * left_scale + [0, _BANNER_PX]).astype(int).tolist())
            b = tuple(np.round(r * right_scale + offset).astype(int).tolist())
            cv2.line(canvas, a, b, _GREEN, 1, cv2.LINE_AA)
            cv2.circle(canvas, a, 2, _RED, -1, cv2.LINE_AA)
            cv2.circle(canvas, b, 2, _RED, -1, cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, "query", (6, 17), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "reference", (int(offset[0]) + 6, 17), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if caption:
        cv2.putText(canvas, caption, (6, 38), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def _caption(explanation: Explanation) -> str:
    evidence = explanation.evidence
    verdict = "same place" if explanation.verdict else "different place"
    words = [f"{verdict} ({explanation.confidence:.0%})"]
    if evidence is not None:
        if evidence.match_prob is not None:
            words.append(f"p={evidence.match_prob:.2f}")
        if evidence.method == "structure" and evidence.structure_ncc is not None:
            words.append(f"edge layout r={evidence.structure_ncc:.2f}")
        else:
            words.append(f"inliers={evidence.inliers}")
    return "  ".join(words)


def write_figure(
    path: str | os.PathLike[str],
    query: np.ndarray,
    reference: np.ndarray,
    explanation: Explanation,
    *,
    homography: np.ndarray | None = None,
    query_points: np.ndarray | None = None,
    reference_points: np.ndarray | None = None,
    chip_box: np.ndarray | None = None,
) -> Path:
    """Draw the pair (see :func:`draw_pair`) with the verdict as caption; write a PNG atomically.

    Returns:
        ``path``.
    """
    figure = draw_pair(
        query,
        reference,
        homography=homography,
        query_points=query_points,
        reference_points=reference_points,
        chip_box=chip_box,
        caption=_caption(explanation),
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        # a 256-colour palette keeps a figure near 150 KB instead of ~500 KB, with no visible loss
        palette = Image.fromarray(figure, "RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        palette.save(tmp, format="PNG", optimize=True)
    return path
