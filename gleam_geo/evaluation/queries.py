"""Synthetic query views rendered from real rasters, with their true position and heading.

A view is a square image of ``ground_side_m`` metres at ``size_px`` pixels, centred on a
ground point, turned to a heading, optionally tilted (a homography of the ground plane,
as a camera pitched forward sees it) and photometrically degraded (gain, contrast,
gamma, blur, JPEG). The truth is the ground point under the image centre and the map
direction of the image's "up", both in the raster's CRS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import rasterio
from rasterio.windows import Window

from ..raster import open_raster

__all__ = ["Query", "ViewSpec", "render_view", "sample_specs"]

_FOCAL = 1.5  # focal length over image side for tilted views (about 37 deg field of view)


@dataclass(frozen=True)
class ViewSpec:
    """How to render one view.

    Attributes:
        source: raster to render from.
        centre_xy: the ground point at the nadir image centre, in the raster's CRS.
        heading_deg: map direction of the image's "up", degrees clockwise from grid north.
        ground_side_m: side of the nadir footprint in metres.
        size_px: output image side.
        tilt_deg: forward camera tilt (0 = nadir).
        photometric: whether to apply gain, contrast, gamma, blur and JPEG.
        seed: seed for the photometric changes.
    """

    source: str
    centre_xy: tuple[float, float]
    heading_deg: float
    ground_side_m: float
    size_px: int
    tilt_deg: float = 0.0
    photometric: bool = False
    seed: int = 0


@dataclass
class Query:
    """A rendered view and its truth (``true_xy`` and heading in ``crs``)."""

    pixels: np.ndarray
    crs: str
    true_xy: tuple[float, float]
    true_heading_deg: float
    spec: ViewSpec


def _tilt_homography(size: int, tilt_deg: float) -> np.ndarray:
    """Tilted-view pixels to nadir-view pixels, keeping the centre and the local scale there."""
    if tilt_deg == 0:
        return np.eye(3)
    c, f = size / 2, _FOCAL * size
    k = np.array([[f, 0, c], [0, f, c], [0, 0, 1.0]])
    t = math.radians(tilt_deg)
    rotation = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
    h = k @ rotation @ np.linalg.inv(k)
    centre = h @ np.array([c, c, 1.0])
    centre = centre[:2] / centre[2]
    h = np.array([[1, 0, c - centre[0]], [0, 1, c - centre[1]], [0, 0, 1.0]]) @ h
    eps = 1e-3
    p = [h @ np.array([c + dx, c + dy, 1.0]) for dx, dy in ((0, 0), (eps, 0), (0, eps))]
    p = [q[:2] / q[2] for q in p]
    det = abs(np.linalg.det(np.column_stack([p[1] - p[0], p[2] - p[0]]))) / eps**2
    s = 1 / math.sqrt(det)
    scale = np.array([[s, 0, c * (1 - s)], [0, s, c * (1 - s)], [0, 0, 1.0]])
    return scale @ h


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = image.astype(np.float32) / 255.0
    out = out * rng.uniform(0.9, 1.1, size=3)  # colour balance
    out = (out - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.1, 0.1)
    out = np.clip(out, 0, 1) ** rng.uniform(0.7, 1.4)
    out = (out * 255).astype(np.uint8)
    sigma = rng.uniform(0.0, 1.5)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    quality = int(rng.integers(30, 90))
    ok, encoded = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1].copy() if ok else out


def render_view(spec: ViewSpec) -> Query:
    """Render ``spec`` from its raster; returns the image and its truth."""
    source = open_raster(spec.source)
    mpu = source.pixel_size_m[0] / math.hypot(source.transform.a, source.transform.d)
    n, c = spec.size_px, spec.size_px / 2
    gsd_units = spec.ground_side_m / n / mpu
    theta = math.radians(spec.heading_deg)
    right = np.array([math.cos(theta), -math.sin(theta)]) * gsd_units
    up = np.array([math.sin(theta), math.cos(theta)]) * gsd_units
    # nadir output pixel -> map CRS
    to_map = np.array(
        [
            [right[0], -up[0], spec.centre_xy[0] - c * right[0] + c * up[0]],
            [right[1], -up[1], spec.centre_xy[1] - c * right[1] + c * up[1]],
            [0, 0, 1.0],
        ]
    )
    full = to_map @ _tilt_homography(n, spec.tilt_deg)
    reach = spec.ground_side_m / mpu * (1.0 + 2.0 * math.tan(math.radians(spec.tilt_deg)))
    inverse = ~source.transform
    col, row = inverse @ spec.centre_xy
    half = reach / abs(source.transform.a)
    col0, row0 = max(0, int(col - half)), max(0, int(row - half))
    col1, row1 = min(source.width, int(col + half) + 1), min(source.height, int(row + half) + 1)
    with rasterio.open(source.path) as dataset:
        data = dataset.read(list(source.rgb_bands), window=Window(col0, row0, col1 - col0, row1 - row0))
    window_image = np.ascontiguousarray(np.repeat(data, 3, 0) if len(data) == 1 else data).transpose(1, 2, 0)
    a, b, cc, d, e, f = (~source.transform)[:6]
    map_to_window = np.array([[a, b, cc - col0], [d, e, f - row0], [0, 0, 1.0]])
    to_window = map_to_window @ full
    pixels = cv2.warpPerspective(
        np.ascontiguousarray(window_image),
        to_window,
        (n, n),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )
    if spec.photometric:
        pixels = _photometric(pixels, np.random.default_rng(spec.seed))
    centre = full @ np.array([c, c, 1.0])
    above = full @ np.array([c, c - 1.0, 1.0])
    centre, above = centre[:2] / centre[2], above[:2] / above[2]
    heading = math.degrees(math.atan2(above[0] - centre[0], above[1] - centre[1])) % 360.0
    return Query(pixels, source.crs_string, (float(centre[0]), float(centre[1])), heading, spec)


def sample_specs(
    source: str,
    count: int,
    seed: int,
    *,
    size_px: int,
    side_m: tuple[float, float],
    heading: bool = True,
    tilt_deg: tuple[float, float] = (0.0, 0.0),
    photometric: bool = False,
) -> list[ViewSpec]:
    """Draw ``count`` view specs over ``source`` with a fixed seed.

    Centres are drawn so the nadir footprint (any heading) stays inside the raster where
    it fits; ``side_m`` and ``tilt_deg`` are uniform ranges.
    """
    raster = open_raster(source)
    rng = np.random.default_rng(seed)
    left, bottom, right, top = raster.bounds
    mpu = raster.pixel_size_m[0] / math.hypot(raster.transform.a, raster.transform.d)
    specs = []
    for i in range(count):
        side = float(rng.uniform(*side_m))
        radius = side / math.sqrt(2) / mpu
        xs = (left + radius, right - radius) if right - left > 2 * radius else ((left + right) / 2,) * 2
        ys = (bottom + radius, top - radius) if top - bottom > 2 * radius else ((bottom + top) / 2,) * 2
        specs.append(
            ViewSpec(
                source=source,
                centre_xy=(float(rng.uniform(*xs)), float(rng.uniform(*ys))),
                heading_deg=float(rng.uniform(0, 360)) if heading else 0.0,
                ground_side_m=side,
                size_px=size_px,
                tilt_deg=float(rng.uniform(*tilt_deg)),
                photometric=photometric,
                seed=seed * 100_003 + i,
            )
        )
    return specs
