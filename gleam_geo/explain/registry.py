"""Pick an explainer backend by name, or from the environment.

``"evidence"`` is the offline default. ``"openai"`` talks to an OpenAI-compatible
endpoint configured by ``GLEAM_GEO_LLM_BASE_URL``, ``GLEAM_GEO_LLM_MODEL`` and
``GLEAM_GEO_LLM_API_KEY``; ``"transformers"`` runs a local Qwen2.5-VL (``model_path=`` or
``GLEAM_GEO_EXPLAIN_MODEL``). ``"auto"`` (or ``None``) takes ``GLEAM_GEO_EXPLAIN_BACKEND``
when set, else ``"openai"`` when ``GLEAM_GEO_LLM_BASE_URL`` is set, else ``"evidence"``, so
configuring an endpoint switches explanations to it with no code change. Model backends
come wrapped in the on-disk cache (:mod:`.cache`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import Explainer
from .cache import CachedExplainer, ExplanationCache
from .evidence_explainer import EvidenceExplainer

__all__ = ["BACKENDS", "get_explainer", "resolve_backend_name"]

BACKENDS: tuple[str, ...] = ("evidence", "openai", "transformers")
"""Backend names :func:`get_explainer` knows, besides ``"auto"``."""


def resolve_backend_name(name: str | None = None) -> str:
    """The backend ``name`` stands for: ``"auto"``/``None`` is resolved from the environment."""
    if name is None or name == "auto":
        chosen = os.environ.get("GLEAM_GEO_EXPLAIN_BACKEND", "").strip()
        if chosen and chosen != "auto":
            name = chosen
        else:
            name = "openai" if os.environ.get("GLEAM_GEO_LLM_BASE_URL", "").strip() else "evidence"
    if name not in BACKENDS:
        raise ValueError(f"unknown explainer backend {name!r}: use one of auto, {', '.join(BACKENDS)}")
    return name


def get_explainer(
    backend: str | Explainer | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    **settings: Any,
) -> Explainer:
    """Return the explainer ``backend`` names (or ``backend`` itself when it is one).

    Args:
        backend: ``"evidence"``, ``"openai"``, ``"transformers"``, ``"auto"``/``None``
            (see the module notes) or an :class:`~gleam_geo.explain.Explainer`.
        cache_dir: where model backends cache explanations (default: under
            :func:`gleam_geo.api.default_cache_dir`).
        **settings: passed to the backend: :class:`EvidenceExplainer` (``thresholds``),
            ``OpenAIExplainer.from_env`` (``base_url``, ``model``, ``api_key``, ...) or
            ``TransformersExplainer`` (``model_path``, ``device``, ...).

    Raises:
        ValueError: an unknown backend name, or no model path for ``"transformers"``.
        ExplainerError: a model backend that is not configured or cannot load.
        ImportError: a model backend whose module or dependencies are not installed.
    """
    if backend is not None and not isinstance(backend, str):
        if not isinstance(backend, Explainer):
            raise ValueError(f"backend must be a name or an Explainer, got {type(backend).__name__}")
        return backend
    name = resolve_backend_name(backend)
    if name == "evidence":
        return EvidenceExplainer(**settings)
    from .prompt import PROMPT_VERSION

    if name == "openai":
        from .openai_backend import OpenAIExplainer

        model: Explainer = OpenAIExplainer.from_env(**settings)
    else:
        from .transformers_backend import TransformersExplainer

        path = settings.pop("model_path", None) or os.environ.get("GLEAM_GEO_EXPLAIN_MODEL")
        if not path:
            raise ValueError(
                "the transformers explainer needs a model: pass model_path= or set GLEAM_GEO_EXPLAIN_MODEL "
                "to a Qwen2.5-VL folder"
            )
        model = TransformersExplainer(Path(path), **settings)
    return CachedExplainer(model, ExplanationCache(cache_dir), version=PROMPT_VERSION)
