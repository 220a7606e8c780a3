"""The explanation contract: measured evidence in, a verdict with reasons out.

Every explainer backend (the offline evidence explainer, an OpenAI-compatible chat
endpoint, a local Qwen2.5-VL) takes the same inputs, the query image, the reference chip
image and the :class:`Evidence` measured for the pair, and returns an :class:`Explanation`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

__all__ = ["LANGUAGES", "Evidence", "Explainer", "Explanation", "Language", "check_language"]

Language = Literal["en", "zh"]
LANGUAGES: tuple[str, ...] = ("en", "zh")


def check_language(language: str) -> Language:
    """Return ``language`` if it is supported, else raise a one-line ``ValueError``."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}")
    return language  # type: ignore[return-value]


@dataclass(frozen=True)
class Evidence:
    """What was measured about one (query, reference chip) pair. ``None`` means not measured.

    Attributes:
        retrieval_score: cosine similarity of the query and chip embeddings.
        score_margin: ``retrieval_score`` minus the next candidate's score.
        match_prob: calibrated probability that the refined position is right.
        inliers: geometrically verified keypoint matches (0 when verification failed).
        putative_matches: matches before geometric verification.
        inlier_ratio: inliers over putative matches.
        inlier_spread: share of the query image covered by the inliers' convex hull (0-1).
        reprojection_rms_px: inlier reprojection error, reference pixels.
        scale_ratio: query ground sampling distance over the chip's.
        heading_deg: estimated heading of the query's "up", degrees clockwise from north.
        tilt_anisotropy: ratio of the homography's local stretch along its two axes (1 = nadir).
        colour_agreement: correlation of the colour histograms of the query and the aligned
            reference (-1 to 1).
        structure_agreement: correlation of edge structure between the query and the aligned
            reference (-1 to 1).
        gsd_m: estimated query ground sampling distance, metres per pixel.
        error_radius_m: radius that holds the true position about 9 times in 10.
        method: how the position was found: ``keypoints`` (verified feature matches) or
            ``structure`` (edge-layout search, when keypoints fail across dates).
        structure_ncc: the structure search's peak correlation of edge directions (-1 to 1).
        structure_peak_ratio: that peak over the best one a query radius or more away (>= 1).
    """

    retrieval_score: float | None = None
    score_margin: float | None = None
    match_prob: float | None = None
    inliers: int = 0
    putative_matches: int = 0
    inlier_ratio: float = 0.0
    inlier_spread: float = 0.0
    reprojection_rms_px: float | None = None
    scale_ratio: float | None = None
    heading_deg: float | None = None
    tilt_anisotropy: float | None = None
    colour_agreement: float | None = None
    structure_agreement: float | None = None
    gsd_m: float | None = None
    error_radius_m: float | None = None
    method: str = "keypoints"
    structure_ncc: float | None = None
    structure_peak_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The evidence as a JSON-ready dict (``None`` kept, floats rounded for stable prompts)."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Explanation:
    """A verdict on one pair, with its reasons.

    Attributes:
        verdict: ``True`` when the query and the chip show the same place.
        confidence: how sure the explainer is of ``verdict`` (0-1).
        reasoning: the explanation, in ``language``.
        language: "en" or "zh".
        model: which explainer produced it (the ``explanation_model`` column), e.g.
            ``"evidence-v1"`` or ``"openai:gpt-4o"``.
        evidence: the measured evidence it was based on.
        figure: a PNG showing the pair and the matches, when one was written.
    """

    verdict: bool
    confidence: float
    reasoning: str
    language: Language
    model: str
    evidence: Evidence | None = None
    figure: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Explainer(Protocol):
    """A backend that explains one pair.

    ``model_id`` names the backend and its model (e.g. ``"openai:gpt-4o"``); it goes into
    the ``explanation_model`` column and the cache key.
    """

    model_id: str

    def explain(
        self, query: np.ndarray, reference: np.ndarray, evidence: Evidence, language: Language
    ) -> Explanation:
        """Explain whether ``query`` (RGB uint8 HxWx3) shows the place in ``reference``."""
        ...
