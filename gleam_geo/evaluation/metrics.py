"""Accuracy metrics over per-query outcomes: recall@k, position and heading error, calibration."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "QueryOutcome",
    "brier_score",
    "expected_calibration_error",
    "radius_coverage",
    "reliability_table",
    "summarize",
]


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
        candidate_errors_m: distance from each refined candidate's point to the truth (NaN
            when unverified or the place is not in the index).
        candidate_radii_m: each refined candidate's ``error_radius_m`` (NaN when unverified).
        candidate_probs: each refined candidate's ``match_prob``.
        candidate_methods: how each was refined (``keypoints`` or ``structure``).
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
    candidate_errors_m: list[float] = field(default_factory=list)
    candidate_radii_m: list[float] = field(default_factory=list)
    candidate_probs: list[float] = field(default_factory=list)
    candidate_methods: list[str] = field(default_factory=list)


def _finite(probs: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels as arrays, without the rows whose probability is NaN."""
    p, y = np.asarray(probs, float), np.asarray(labels, float)
    keep = ~np.isnan(p)
    return p[keep], y[keep]


def reliability_table(
    probs: Sequence[float], labels: Sequence[int], bins: int = 10
) -> list[tuple[float, float, int, float, float]]:
    """Equal-width reliability bins: ``(low, high, count, mean probability, frequency of 1)``.

    Empty bins are left out; NaN probabilities are skipped. A probability of exactly 1 falls
    in the last bin.
    """
    p, y = _finite(probs, labels)
    which = np.minimum((p * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            table.append(
                (
                    b / bins,
                    (b + 1) / bins,
                    int(in_bin.sum()),
                    float(p[in_bin].mean()),
                    float(y[in_bin].mean()),
                )
            )
    return table


def expected_calibration_error(probs: Sequence[float], labels: Sequence[int], bins: int = 10) -> float:
    """Expected calibration error with equal-width bins (NaN probabilities are skipped).

    The count-weighted mean over bins of ``|mean probability - frequency of 1|``.
    """
    table = reliability_table(probs, labels, bins)
    total = sum(count for _, _, count, _, _ in table)
    if total == 0:
        return math.nan
    return float(sum(count * abs(mean_p - freq) for _, _, count, mean_p, freq in table) / total)


def brier_score(probs: Sequence[float], labels: Sequence[int]) -> float:
    """Mean squared difference between probability and label (NaN probabilities are skipped)."""
    p, y = _finite(probs, labels)
    return float(np.mean((p - y) ** 2)) if len(p) else math.nan


def radius_coverage(errors_m: Sequence[float], radii_m: Sequence[float]) -> float:
    """Fraction of matches whose true error is within their error radius (NaN pairs skipped)."""
    e, r = np.asarray(errors_m, float), np.asarray(radii_m, float)
    keep = ~(np.isnan(e) | np.isnan(r))
    return float(np.mean(e[keep] <= r[keep])) if keep.any() else math.nan


def summarize(outcomes: Sequence[QueryOutcome]) -> dict[str, float]:
    """Recall@1/5/10, median and 90th-percentile error, heading error, failure rate, s/query.

    Queries whose place is not in the index only count towards ``out_of_index_prob`` and
    ``out_of_index_max_prob`` (the median and largest ``match_prob`` they get).
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
        probs = [o.match_prob for o in outside]
        result["out_of_index_prob"] = float(np.nanmedian(probs))
        result["out_of_index_max_prob"] = float(np.nanmax(probs))
    return result
