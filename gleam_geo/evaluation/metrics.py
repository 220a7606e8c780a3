"""Accuracy metrics over per-query outcomes: recall@k, position and heading error, calibration."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["QueryOutcome", "expected_calibration_error", "summarize"]


@dataclass
class QueryOutcome:
    """What happened to one query.

    Attributes:
        hit_rank: rank of the first candidate within the hit radius of the truth (``None``: none).
        error_m: distance from the top candidate's point to the truth, metres.
        heading_error_deg: absolute heading error of the top candidate (NaN when not refined).
        match_prob: the top candidate's ``match_prob`` (NaN when not refined).
        correct: whether the top candidate is within the hit radius.
        seconds: wall time of ``localize``.
        in_index: whether the query's place is in the index.
        calibration_rows: features of every refined candidate, for fitting ``match_prob``.
        calibration_labels: 1 where that candidate's refined point is right.
    """

    hit_rank: int | None
    error_m: float
    heading_error_deg: float
    match_prob: float
    correct: bool
    seconds: float
    in_index: bool = True
    calibration_rows: list[np.ndarray] = field(default_factory=list)
    calibration_labels: list[int] = field(default_factory=list)


def expected_calibration_error(probs: Sequence[float], labels: Sequence[int], bins: int = 10) -> float:
    """Expected calibration error with equal-width bins (NaN probabilities are skipped)."""
    p, y = np.asarray(probs, float), np.asarray(labels, float)
    keep = ~np.isnan(p)
    p, y = p[keep], y[keep]
    if len(p) == 0:
        return math.nan
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.sum() * abs(p[in_bin].mean() - y[in_bin].mean())
    return float(total / len(p))


def summarize(outcomes: Sequence[QueryOutcome]) -> dict[str, float]:
    """Recall@1/5/10, median and 90th-percentile error, heading error, failure rate, s/query.

    Queries whose place is not in the index only count towards ``out_of_index_prob``
    (the median ``match_prob`` they get).
    """
    inside = [o for o in outcomes if o.in_index]
    outside = [o for o in outcomes if not o.in_index]
    result: dict[str, float] = {"queries": float(len(inside))}
    if inside:
        ranks = np.array([o.hit_rank if o.hit_rank is not None else 10**9 for o in inside])
        errors = np.array([o.error_m for o in inside])
        headings = np.array([o.heading_error_deg for o in inside])
        for k in (1, 5, 10):
            result[f"R@{k}"] = float(np.mean(ranks <= k))
        result["median_error_m"] = float(np.median(errors))
        result["p90_error_m"] = float(np.percentile(errors, 90))
        result["median_heading_error_deg"] = (
            float(np.nanmedian(headings)) if np.isfinite(headings).any() else math.nan
        )
        result["failure_rate"] = float(np.mean([not o.correct for o in inside]))
        result["seconds_per_query"] = float(np.median([o.seconds for o in inside]))
        result["top1_ece"] = expected_calibration_error(
            [o.match_prob for o in inside], [int(o.correct) for o in inside]
        )
    if outside:
        result["out_of_index_queries"] = float(len(outside))
        result["out_of_index_prob"] = float(np.nanmedian([o.match_prob for o in outside]))
    return result
