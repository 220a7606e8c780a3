"""GLEAM-X: a verdict on a (query, chip) pair, with reasons a person can check.

``explain(query, chip)`` refines the chip against the query, measures the evidence
(:mod:`.evidence`), asks a backend (:mod:`.registry`: the offline evidence explainer by
default, an OpenAI-compatible endpoint or a local Qwen2.5-VL) and can draw a figure
(:mod:`.figure`). Model backends are cached on disk (:mod:`.cache`).

``gleam_geo.explain`` is both this package and, lazily, the :func:`explain` function;
importing a submodule makes Python bind the package in its place, so the package is
callable too and ``gleam_geo.explain(query, chip)`` works either way.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .base import LANGUAGES, Evidence, Explainer, Explanation, Language, check_language
from .cache import CachedExplainer, ExplanationCache, cache_key, default_explanation_dir
from .evidence import appearance_agreement, measure_evidence
from .evidence_explainer import EvidenceExplainer, Thresholds
from .figure import draw_pair, write_figure
from .pipeline import explain, explain_refinement, explain_results, keeping_images
from .registry import BACKENDS, get_explainer, resolve_backend_name

__all__ = [
    "BACKENDS",
    "LANGUAGES",
    "CachedExplainer",
    "Evidence",
    "EvidenceExplainer",
    "Explainer",
    "Explanation",
    "ExplanationCache",
    "Language",
    "Thresholds",
    "appearance_agreement",
    "cache_key",
    "check_language",
    "default_explanation_dir",
    "draw_pair",
    "explain",
    "explain_refinement",
    "explain_results",
    "get_explainer",
    "keeping_images",
    "measure_evidence",
    "resolve_backend_name",
    "write_figure",
]


class _CallablePackage(types.ModuleType):
    """This package, callable as :func:`explain`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Explanation:
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
