import math

import pytest

from gleam_geo.evaluation import QueryOutcome, expected_calibration_error, summarize


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
