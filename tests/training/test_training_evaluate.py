import json

import numpy as np
import pytest

from training.gleam_c.evaluate import average_precision, retrieval_metrics, write_metrics


def test_average_precision_follows_university1652_trapezoid():
    assert average_precision(np.array([0])) == 1.0
    assert average_precision(np.array([1])) == pytest.approx(0.25)  # (0/1 + 1/2) / 2, as compute_mAP
    assert average_precision(np.array([0, 2])) == pytest.approx((1.0 + (1 / 2 + 2 / 3) / 2) / 2)


def test_retrieval_metrics_recall_ap_and_hit_rate():
    gallery = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0, 0, 0], [0, 0.6, 0.8, 0]], dtype=np.float32)  # 2nd ranks gallery 2 first
    positives = [np.array([0]), np.array([1])]
    metrics = retrieval_metrics(queries, gallery, positives, semi_positives=[np.array([]), np.array([2])])
    assert metrics["R@1"] == 50.0 and metrics["R@5"] == 100.0
    assert metrics["AP"] == pytest.approx(100 * (1 + 0.25) / 2)
    assert metrics["hit_rate"] == 100.0
    assert (metrics["queries"], metrics["gallery"]) == (2, 4)


def test_write_metrics_json_and_markdown(tmp_path):
    json_path, md_path = write_metrics({"R@1": 12.5, "queries": 3}, tmp_path / "m", "model on set")
    assert json.loads(json_path.read_text()) == {"title": "model on set", "R@1": 12.5, "queries": 3}
    assert "| 12.50 | 3 |" in md_path.read_text()
