"""Calibrated match probability: a logistic model over verification features.

The features of one refined candidate are the log inlier count, the inlier ratio, the
retrieval score and the reprojection error. The weights are fitted by the accuracy
harness (:mod:`gleam_geo.evaluation`) on held-out synthetic cases and shipped in
``calibration.json`` next to this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["Calibration", "FEATURE_NAMES", "features", "fit_calibration", "load_calibration"]

FEATURE_NAMES: tuple[str, ...] = ("log_inliers", "inlier_ratio", "retrieval_score", "rms_px")
_DEFAULT_PATH = Path(__file__).with_name("calibration.json")


def features(inliers: int, inlier_ratio: float, retrieval_score: float, rms_px: float) -> np.ndarray:
    """The feature vector of one candidate, in :data:`FEATURE_NAMES` order."""
    return np.array([math.log1p(inliers), inlier_ratio, retrieval_score, rms_px], dtype=np.float64)


@dataclass(frozen=True)
class Calibration:
    """Logistic calibration: ``p = sigmoid(bias + weights . features)``."""

    weights: tuple[float, ...]
    bias: float
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Match probability for feature rows ``x`` ``(N, F)`` (or one row ``(F,)``)."""
        z = np.asarray(x, dtype=np.float64) @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def save(self, path: str | Path) -> None:
        """Write the parameters as JSON."""
        data = asdict(self)
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


def load_calibration(
    path: str | Path | None = None, feature_names: tuple[str, ...] = FEATURE_NAMES
) -> Calibration:
    """Read calibration parameters (default: the shipped keypoint calibration).

    Raises:
        ValueError: the file was fitted on other features than ``feature_names``.
    """
    data = json.loads(Path(path or _DEFAULT_PATH).read_text())
    names = tuple(data.get("feature_names", FEATURE_NAMES))
    if names != feature_names:
        raise ValueError(f"calibration file {path} has features {names}; expected {feature_names}")
    return Calibration(weights=tuple(data["weights"]), bias=float(data["bias"]), feature_names=names)


def fit_calibration(
    x: np.ndarray,
    y: np.ndarray,
    *,
    l2: float = 1e-2,
    iterations: int = 50,
    feature_names: tuple[str, ...] = FEATURE_NAMES,
) -> Calibration:
    """Fit a logistic model by Newton's method (IRLS) with a small L2 penalty.

    Args:
        x: feature rows ``(N, F)``.
        y: 1 where the candidate's refined position was right, else 0.
        l2: ridge penalty on the weights (not the bias).
        iterations: Newton steps at most.
        feature_names: what the columns of ``x`` are.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError("fit_calibration needs feature rows (N, F) and N labels, N >= 2")
    design = np.column_stack([np.ones(len(x)), x])
    theta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -50, 50)))
        gradient = design.T @ (p - y) + penalty * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return Calibration(
        weights=tuple(float(w) for w in theta[1:]), bias=float(theta[0]), feature_names=feature_names
    )
