"""Cross-time probe (NAIP 2009 queries vs the 2020 raster): why keypoints fail, what edges give.

Three measurements on the ``cross_time`` suite's queries (seed 1), each against the whole
2020 raster (934 x 723 px at 5 m, so no retrieval is involved):

* ``sift``, ``xfeat``, ``lightglue``: the library's matcher of that name (SIFT; XFeat +
  LighterGlue; DISK + LightGlue, query at 4 quarter turns) and RANSAC homography, query at
  1x and 2x;
* ``edges``: correlation of doubled-angle gradient orientation fields (contrast-sign
  invariant) over 48 rotations at the query's true scale, on the raster at ``--gsd`` m/px;
* ``edges --search-scale``: the same over 9 scales (0.5x-2x of a 640 m chip) as well.

    .venv/bin/python benchmarks/cross_time_probe.py --count 12 --method edges
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np
import rasterio

from gleam_geo.evaluation import SUITES
from gleam_geo.evaluation.queries import Query, render_view, sample_specs
from gleam_geo.raster import open_raster
from gleam_geo.records import PixelWindow
from gleam_geo.refine import LocalMatcher, ReferencePatch, estimate_homography, read_patch, structure
from gleam_geo.refine.learned_matchers import get_matcher
from gleam_geo.refine.matchers import Features

ROOT = Path(__file__).resolve().parents[1]


def orientation_field(image: np.ndarray) -> np.ndarray:
    """The library's doubled-angle orientation field, channels last ``(H, W, 2)`` for OpenCV."""
    return np.ascontiguousarray(np.moveaxis(structure.orientation_field(image), 0, -1))


def _rotated(image: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned counter-clockwise on a canvas that holds all of it, and the 2x3 matrix."""
    height, width = image.shape[:2]
    side = math.ceil(math.hypot(height, width)) + 2
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle_deg, 1.0)
    matrix[:, 2] += ((side - width) / 2, (side - height) / 2)
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR), matrix


def _peak(reference: np.ndarray, template: np.ndarray) -> tuple[float, float, tuple[int, int]]:
    """NCC peak of ``template`` in ``reference``: (score, peak-to-sidelobe ratio, top-left)."""
    response = cv2.matchTemplate(reference, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, location = cv2.minMaxLoc(response)
    spread = float(response.std())
    return float(best), (best - float(response.mean())) / max(spread, 1e-6), location


def keypoint_error(
    query: Query, reference: ReferencePatch, upsample: float, matcher: LocalMatcher, described: Features
) -> float:
    """Position error (m) of ``matcher`` + RANSAC against the described reference; inf if unverified."""
    image = cv2.resize(query.pixels, None, fx=upsample, fy=upsample, interpolation=cv2.INTER_CUBIC)
    matches = matcher.match(matcher.query_features(image), described)
    verification = estimate_homography(matches.query, matches.reference, (image.shape[1], image.shape[0]))
    if verification is None:
        return math.inf
    centre = verification.homography @ np.array([image.shape[1] / 2, image.shape[0] / 2, 1.0])
    x, y = reference.transform * (centre[0] / centre[2], centre[1] / centre[2])
    return math.hypot(x - query.true_xy[0], y - query.true_xy[1])


def edge_error(query: Query, reference: ReferencePatch, gsd: float, sides_m: list[float]) -> float:
    """Position error (m) of the best orientation-field correlation over rotations and ``sides_m``."""
    best = (-math.inf, 0.0, 0.0, (0, 0), np.eye(2, 3))
    for angle in np.arange(0.0, 360.0, 7.5):
        # turn the image, not the field: a turned field would keep its old orientation values
        turned, matrix = _rotated(reference.pixels, float(angle))
        valid, _ = _rotated(np.ones(reference.pixels.shape[:2], np.float32), float(angle))
        canvas = orientation_field(turned) * valid[..., None]
        for side_m in sides_m:
            px = max(8, round(side_m / gsd))
            template = orientation_field(cv2.resize(query.pixels, (px, px), interpolation=cv2.INTER_AREA))
            score, _, location = _peak(canvas, template)
            if score > best[0]:
                best = (score, float(angle), px, location, matrix)
    _, _, px, location, matrix = best
    col, row = cv2.invertAffineTransform(matrix) @ np.array([location[0] + px / 2, location[1] + px / 2, 1.0])
    x, y = reference.transform * (col, row)
    return math.hypot(x - query.true_xy[0], y - query.true_xy[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--method", choices=("sift", "xfeat", "lightglue", "edges"), default="edges")
    parser.add_argument(
        "--max-features", type=int, default=2048, help="keypoints per image (xfeat, lightglue)"
    )
    parser.add_argument("--gsd", type=float, default=10.0)
    parser.add_argument("--search-scale", action="store_true")
    args = parser.parse_args()
    suite = SUITES["cross_time"]
    data = Path(args.data)
    specs = sample_specs(
        str(data / suite.query_source), args.count, 1, size_px=suite.size_px, side_m=suite.side_m
    )
    source = open_raster(str(data / suite.index_rasters[0]))
    gsd = args.gsd if args.method == "edges" else 5.0
    with rasterio.open(source.path) as dataset:
        window = PixelWindow(0, 0, source.width, source.height)
        reference = read_patch(dataset, source, window, margin=1.0, gsd_m=gsd)
    if args.method != "edges":
        options = {} if args.method == "sift" else {"max_features": args.max_features}
        matcher = get_matcher(args.method, **options)
        described = matcher.features(reference.pixels)
    errors, seconds = [], []
    for spec in specs:
        query = render_view(spec)
        start = time.perf_counter()
        if args.method != "edges":
            error = min(
                keypoint_error(query, reference, upsample, matcher, described) for upsample in (1.0, 2.0)
            )
        else:
            sides = list(640.0 * np.geomspace(0.5, 2.0, 9)) if args.search_scale else [spec.ground_side_m]
            error = edge_error(query, reference, gsd, sides)
        seconds.append(time.perf_counter() - start)
        errors.append(error)
    found = np.array(errors)
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"{args.method}{' scale-searched' if args.search_scale else ''}: {len(found)} queries, "
        f"within 320 m {np.mean(found <= 320):.0%}, within 15 m {np.mean(found <= 15):.0%}, "
        f"median error {np.median(found):.0f} m, {np.median(seconds):.1f} s/query, load {load}"
    )


if __name__ == "__main__":
    main()
