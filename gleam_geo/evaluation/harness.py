"""Query suites over the sample rasters, run through ``localize`` and scored.

Each :class:`Suite` names an index (rasters and tiling), the raster its queries are
rendered from and how they are drawn. :func:`run_suite` builds (or reuses) the index
through the library API, localizes every query with a fixed seed and returns per-query
outcomes; :func:`fit_from_outcomes` fits the ``match_prob`` calibration from them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..api import build_index, localize
from ..index import GeoIndex
from ..progress import Progress, ProgressCallback
from ..refine import Calibration, Refinement, Refiner, fit_calibration
from .metrics import QueryOutcome
from .queries import Query, render_view, sample_specs

__all__ = ["SUITES", "Suite", "evaluate", "fit_from_outcomes", "open_suite_index", "run_suite"]

KAMPALA_INDEX = (
    "kampala/kampala_z19.tif",
    "kampala/kampala_z21_block2.tif",
    "netherlands/nl_25cm.tif",
    "oam_tcd/manila_10cm.tif",
    "oam_tcd/valencia_10cm.tif",
)


@dataclass(frozen=True)
class Suite:
    """One query set and the index it is searched in (paths relative to the data folder).

    Attributes:
        name: suite name in reports.
        index_name: folder name of the index (shared by suites with the same rasters).
        index_rasters: rasters in the index.
        query_source: raster the queries are rendered from.
        count: queries.
        size_px: query image side.
        side_m: range of the query's ground side, metres.
        tilt_deg: range of forward tilt.
        heading: random heading (else north-up).
        photometric: photometric degradation.
        hit_radius_m: a candidate within this distance of the truth is a hit (R@k, failures).
        correct_radius_m: a refined position within this distance is right (calibration labels).
        in_index: whether the query's place is in the index.
        gsd_known: the query's ground resolution is passed to ``localize`` (as it is for a
            georeferenced crop, or a drone photo with a known altitude and camera).
        tiling: index tiling overrides.
    """

    name: str
    index_name: str
    index_rasters: tuple[str, ...]
    query_source: str
    count: int
    size_px: int
    side_m: tuple[float, float]
    tilt_deg: tuple[float, float] = (0.0, 0.0)
    heading: bool = True
    photometric: bool = False
    hit_radius_m: float = 19.2
    correct_radius_m: float = 5.0
    in_index: bool = True
    gsd_known: bool = False
    tiling: dict[str, Any] = field(default_factory=dict)


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite(
            "uav_tilt30", "kampala_distractors", KAMPALA_INDEX, "kampala/kampala_z20.tif", 40, 256,
            (19.2, 76.8), (0.0, 30.0), photometric=True,
        ),
        Suite(
            "uav_tilt45", "kampala_distractors", KAMPALA_INDEX, "kampala/kampala_z20.tif", 20, 256,
            (19.2, 76.8), (30.0, 45.0), photometric=True,
        ),
        Suite(
            "cross_scale", "kampala_distractors", KAMPALA_INDEX, "kampala/kampala_z21_7cm.tif", 20, 512,
            (28.8, 48.0), heading=False,
        ),
        Suite(
            "cross_time", "naip2020", ("naip_nd/naip_m_4709963_se_14_1_20200831.tif",),
            "naip_nd/naip_m_4709963_se_14_1_20090818.tif", 30, 160, (480.0, 960.0),
            hit_radius_m=320.0, correct_radius_m=50.0, gsd_known=True, tiling={"gsd_m": 5.0},
        ),
        Suite(
            "out_of_index", "kampala_distractors", KAMPALA_INDEX, "pix4d/pix4d_orthomosaic_alpha.tif", 20,
            256, (19.2, 76.8), (0.0, 30.0), photometric=True, in_index=False, gsd_known=True,
        ),
    )
}  # fmt: skip
"""The standard suites; counts are the defaults of ``gleam-geo eval``."""


class _RecordingRefiner(Refiner):
    """A refiner that keeps its last results, so the harness can label each candidate."""

    last: list[Refinement]

    def refine(
        self,
        image: np.ndarray,
        chips: pd.DataFrame,
        scores: Sequence[float],
        *,
        query_gsd_m: float | None = None,
    ) -> list[Refinement]:
        self.last = super().refine(image, chips, scores, query_gsd_m=query_gsd_m)
        return self.last


def open_suite_index(
    suite: Suite, data_dir: Path, index_dir: Path, progress: ProgressCallback | None = None
) -> GeoIndex:
    """Open the suite's index under ``index_dir``, building it from ``data_dir`` when missing."""
    path = index_dir / suite.index_name
    if (path / "manifest.json").is_file():
        return GeoIndex.open(path)
    rasters = [str(data_dir / name) for name in suite.index_rasters]
    return build_index(rasters, path, tiling=suite.tiling or None, overwrite=True, progress=progress)


def _distance(point: Any, xy: tuple[float, float]) -> float:
    return math.hypot(point.x - xy[0], point.y - xy[1])


def _outcome(
    suite: Suite, query: Query, results: pd.DataFrame, refinements: list[Refinement], seconds: float
) -> QueryOutcome:
    distances = [_distance(point, query.true_xy) for point in results.geometry]
    hit = next((i + 1 for i, d in enumerate(distances) if d <= suite.hit_radius_m), None)
    top = results.iloc[0]
    heading_error = abs((top["heading_deg"] - query.true_heading_deg + 180.0) % 360.0 - 180.0)
    rows, labels, errors, radii, probs, methods = [], [], [], [], [], []
    for refinement in refinements:
        projection = refinement.projection
        error = _distance(projection.point, query.true_xy) if projection and suite.in_index else math.nan
        rows.append(refinement.features)
        labels.append(int(error <= suite.correct_radius_m))
        errors.append(error)
        radii.append(projection.error_radius_m if projection else math.nan)
        probs.append(refinement.match_prob)
        methods.append(refinement.method)
    return QueryOutcome(
        hit_rank=hit if suite.in_index else None,
        error_m=distances[0],
        heading_error_deg=float(heading_error),
        match_prob=float(top["match_prob"]),
        correct=bool(suite.in_index and distances[0] <= suite.correct_radius_m),
        seconds=seconds,
        in_index=suite.in_index,
        calibration_rows=rows,
        calibration_labels=labels,
        candidate_errors_m=errors,
        candidate_radii_m=radii,
        candidate_probs=probs,
        candidate_methods=methods,
    )


def run_suite(
    suite: Suite,
    data_dir: str | Path,
    index_dir: str | Path,
    *,
    seed: int = 0,
    count: int | None = None,
    rotations: int = 4,
    refine_top_k: int = 10,
    refiner: Refiner | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[QueryOutcome], list[tuple[Query, Refinement]]]:
    """Render the suite's queries (fixed ``seed``), localize each and score it.

    Without ``refiner`` every candidate is refined (no early stop), so calibration sees the
    wrong-chip pairs too.

    Returns:
        The outcomes, and (query, most probable refinement) for the first three queries
        (for drawing worked examples).
    """
    data, indexes = Path(data_dir), Path(index_dir)
    index = open_suite_index(suite, data, indexes, progress)
    specs = sample_specs(
        str(data / suite.query_source),
        count if count is not None else suite.count,
        seed,
        size_px=suite.size_px,
        side_m=suite.side_m,
        heading=suite.heading,
        tilt_deg=suite.tilt_deg,
        photometric=suite.photometric,
    )
    recorder = _RecordingRefiner(
        refiner.matcher if refiner else None,
        refiner.calibration if refiner else None,
        stop_prob=refiner.stop_prob if refiner else None,
        structure_calibration=refiner.structure_calibration if refiner else None,
        keep_images=True,
    )
    tracker = Progress(progress, f"eval {suite.name}", len(specs))
    outcomes: list[QueryOutcome] = []
    examples: list[tuple[Query, Refinement]] = []
    for spec in specs:
        query = render_view(spec)
        start = time.perf_counter()
        results = localize(
            query.pixels,
            index,
            crs=query.crs,
            top_k=10,
            rotations=rotations,
            refine_top_k=refine_top_k,
            refiner=recorder,
            query_gsd_m=spec.ground_side_m / spec.size_px if suite.gsd_known else None,
        )
        seconds = time.perf_counter() - start
        outcomes.append(_outcome(suite, query, results, recorder.last, seconds))
        kept = max(recorder.last, key=lambda r: r.match_prob) if len(examples) < 3 and recorder.last else None
        if kept is not None:
            examples.append((query, kept))
        for refinement in recorder.last:
            if refinement is not kept:
                refinement.patch, refinement.verification = None, None  # keep memory flat
        tracker.advance()
    return outcomes, examples


def fit_from_outcomes(outcomes: Sequence[QueryOutcome]) -> Calibration:
    """Fit the keypoint ``match_prob`` calibration on every keypoint-refined candidate of ``outcomes``."""
    pairs = [
        (row, label)
        for outcome in outcomes
        for row, label, method in zip(
            outcome.calibration_rows, outcome.calibration_labels, outcome.candidate_methods, strict=True
        )
        if method == "keypoints"
    ]
    return fit_calibration(np.array([row for row, _ in pairs]), np.array([label for _, label in pairs]))


def evaluate(
    suite_names: Sequence[str],
    data_dir: str | Path,
    index_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 1,
    count: int | None = None,
    rotations: int = 4,
    calibration_seed: int | None = None,
    calibration_out: str | Path | None = None,
    matcher: str = "sift",
    progress: ProgressCallback | None = None,
) -> Path:
    """Run suites and write the report; optionally fit ``match_prob`` on held-out queries first.

    With ``calibration_seed``, every suite is first run on queries drawn with that seed, the
    calibration is fitted on them (and written to ``calibration_out`` when given), and the
    reported queries (``seed``) are localized with it. ``matcher`` names the local matcher
    (``sift``, ``xfeat`` or ``lightglue``).

    Returns:
        The path of ``report.md``.
    """
    from .metrics import brier_score, expected_calibration_error, radius_coverage, reliability_table
    from .report import write_report

    unknown = [name for name in suite_names if name not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {unknown}; choose from {', '.join(SUITES)}")
    refiner = Refiner(matcher)
    if calibration_seed is not None:
        held_out: list[QueryOutcome] = []
        for name in suite_names:
            held_out += run_suite(
                SUITES[name], data_dir, index_dir, seed=calibration_seed, count=count,
                rotations=rotations, refiner=Refiner(refiner.matcher, stop_prob=None), progress=progress,
            )[0]  # fmt: skip
        refiner = Refiner(refiner.matcher, calibration=fit_from_outcomes(held_out))
        if calibration_out is not None:
            Path(calibration_out).parent.mkdir(parents=True, exist_ok=True)
            refiner.calibration.save(calibration_out)
    results, examples, extra = {}, {}, {}
    all_probs: list[float] = []
    all_labels: list[int] = []
    for name in suite_names:
        outcomes, pairs = run_suite(
            SUITES[name], data_dir, index_dir, seed=seed, count=count, rotations=rotations,
            refiner=refiner, progress=progress,
        )  # fmt: skip
        results[name], examples[name] = outcomes, pairs
        probs = [prob for outcome in outcomes for prob in outcome.candidate_probs]
        labels = [label for outcome in outcomes for label in outcome.calibration_labels]
        if probs:
            all_probs += probs
            all_labels += labels
            right = [
                (e, r)
                for o in outcomes
                for e, r in zip(o.candidate_errors_m, o.candidate_radii_m, strict=True)
                if e <= SUITES[name].correct_radius_m
            ]
            extra[name] = {
                "ece": expected_calibration_error(probs, labels),
                "brier": brier_score(probs, labels),
                "radius_coverage": radius_coverage([e for e, _ in right], [r for _, r in right]),
            }
    header = (
        f"seed {seed}, rotations {rotations}, matcher {refiner.matcher.name}, calibration "
        + (f"fitted on seed {calibration_seed}" if calibration_seed is not None else "shipped")
        + "; ECE and Brier are over every refined candidate (up to the early stop), radius coverage"
        " over the refined candidates placed within the suite's correct radius"
    )
    return write_report(
        results, examples, out_dir, header=header, extra=extra,
        reliability=reliability_table(all_probs, all_labels),
    )  # fmt: skip
