import json

import numpy as np
import pytest

from gleam_geo.evaluation import expected_calibration_error
from gleam_geo.refine import fit_calibration, load_calibration
from gleam_geo.refine.calibration import FEATURE_NAMES


def test_fit_is_calibrated_on_its_own_distribution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, len(FEATURE_NAMES)))
    true_p = 1 / (1 + np.exp(-(2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.5)))
    y = (rng.uniform(size=len(x)) < true_p).astype(int)
    calibration = fit_calibration(x, y)
    assert calibration.weights[0] == pytest.approx(2.0, abs=0.25)
    assert calibration.weights[1] == pytest.approx(-1.0, abs=0.25)
    assert expected_calibration_error(calibration.probability(x), y) < 0.03


def test_regularised_fit_on_separable_with_noise_data_is_calibrated_on_held_out_data():
    rng = np.random.default_rng(1)

    def draw(n):
        # right matches have many more inliers, a higher ratio and smaller residuals than wrong
        # pairs, with overlapping (noisy) class-conditional spreads of equal variance
        y = (rng.uniform(size=n) < 0.3).astype(int)
        means = np.where(y[:, None] == 1, [4.5, 0.6, 0.6, 1.0], [1.5, 0.3, 0.5, 1.6])
        return rng.normal(means, [0.8, 0.15, 0.1, 0.5]), y

    x_fit, y_fit = draw(3000)
    x_test, y_test = draw(3000)
    calibration = fit_calibration(x_fit, y_fit, l2=1.0)
    probs = calibration.probability(x_test)
    assert expected_calibration_error(probs, y_test) < 0.03
    assert 0.05 < np.mean((probs > 0.05) & (probs < 0.95)) < 0.5  # overlap: some doubt, not all


def test_save_and_load_round_trip(tmp_path):
    calibration = fit_calibration(np.array([[0.0] * 4, [1.0] * 4, [2.0] * 4]), np.array([0, 1, 1]))
    calibration.save(tmp_path / "c.json")
    assert load_calibration(tmp_path / "c.json") == calibration


def test_shipped_calibration_rewards_inliers():
    calibration = load_calibration()
    few = calibration.probability(np.array([0.0, 0.0, 0.5, 0.0]))  # verification failed
    many = calibration.probability(np.array([np.log1p(200), 0.6, 0.5, 1.0]))
    assert few < 0.5 < many


def test_wrong_feature_names_are_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"weights": [1.0], "bias": 0.0, "feature_names": ["x"]}))
    with pytest.raises(ValueError, match="expected"):
        load_calibration(path)
