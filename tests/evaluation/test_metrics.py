import math

import pytest

from gleam_geo.evaluation import QueryOutcome, expected_calibration_error, summarize
from gleam_geo.evaluation.metrics import brier_score, radius_coverage, reliability_table


def _outcome(rank, error, correct, prob=0.9, in_index=True):
    return QueryOutcome(rank, error, 2.0, prob, correct, 0.5, in_index=in_index)


def test_summary_recalls_errors_and_failures():
    outcomes = [_outcome(1, 1.0, True), _outcome(3, 30.0, False), _outcome(None, 900.0, False)]
    outcomes.append(_outcome(None, 500.0, False, prob=0.02, in_index=False))
    summary = summarize(outcomes)
    assert summary["queries"] == 3
    assert summary["R@1"] == pytest.approx(1 / 3)
    assert summary["R@5"] == pytest.approx(2 / 3)
    assert summary["median_error_m"] == 30.0
    assert summary["failure_rate"] == pytest.approx(2 / 3)
    assert summary["out_of_index_prob"] == pytest.approx(0.02)


def test_ece_zero_when_probabilities_match_frequencies():
    probs = [0.25] * 4 + [0.75] * 4
    labels = [1, 0, 0, 0, 1, 1, 1, 0]
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)
    assert expected_calibration_error([0.9] * 4, [0] * 4) == pytest.approx(0.9)
    assert math.isnan(expected_calibration_error([], []))


def test_ece_brier_and_reliability_match_hand_computed_values():
    # bin 1 (0.1-0.2): p = 0.1, 0.1, labels 0, 1 -> mean p 0.1, freq 0.5, gap 0.4
    # bin 8 (0.8-0.9): p = 0.8, 0.8, 0.8, labels 1, 1, 0 -> mean p 0.8, freq 2/3, gap 2/15
    # bin 9 (0.9-1.0]: p = 1.0, label 1 -> gap 0
    probs = [0.1, 0.1, 0.8, 0.8, 0.8, 1.0]
    labels = [0, 1, 1, 1, 0, 1]
    table = reliability_table(probs, labels)
    assert [(low, count) for low, _, count, _, _ in table] == [(0.1, 2), (0.8, 3), (0.9, 1)]
    assert table[1][3:] == pytest.approx((0.8, 2 / 3))
    expected_ece = (2 * 0.4 + 3 * (2 / 15) + 1 * 0.0) / 6
    assert expected_calibration_error(probs, labels) == pytest.approx(expected_ece)
    expected_brier = (0.01 + 0.81 + 0.04 + 0.04 + 0.64 + 0.0) / 6
    assert brier_score(probs, labels) == pytest.approx(expected_brier)
    assert brier_score([math.nan, 0.5], [1, 1]) == pytest.approx(0.25)


def test_radius_coverage_counts_errors_within_their_radius():
    errors = [0.5, 2.0, 3.0, math.nan, 1.0]
    radii = [1.0, 1.0, 3.0, 5.0, math.nan]
    assert radius_coverage(errors, radii) == pytest.approx(2 / 3)  # NaN pairs skipped, 3.0 <= 3.0
    assert math.isnan(radius_coverage([], []))
