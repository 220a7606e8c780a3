"""An on-disk cache of explanations, keyed by the pair, the evidence and the backend.

The key hashes the query and reference pixels, the evidence, the language, the backend's
``model_id`` and a version string, so a re-run with the same inputs costs nothing and
any change to them (a new model, a new prompt) misses. Entries are JSON files written
atomically, one per key.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_text
from .base import Evidence, Explainer, Explanation, Language, check_language

__all__ = ["CachedExplainer", "ExplanationCache", "cache_key", "default_explanation_dir"]

CACHE_VERSION = "1"
"""Bumped when the entry format changes."""


def default_explanation_dir() -> Path:
    """Where explanations are cached: ``explanations`` under :func:`gleam_geo.api.default_cache_dir`."""
    from ..api import default_cache_dir

    return default_cache_dir() / "explanations"


def _pixels_digest(image: np.ndarray) -> bytes:
    array = np.ascontiguousarray(image)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.shape}|{array.dtype}".encode())
    digest.update(array.tobytes())
    return digest.digest()


def cache_key(
    query: np.ndarray,
    reference: np.ndarray,
    evidence: Evidence,
    language: str,
    model_id: str,
    version: str = "",
) -> str:
    """The cache key of one explanation: a hex digest of everything that shapes it."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(_pixels_digest(query))
    digest.update(_pixels_digest(reference))
    meta = {"evidence": evidence.to_dict(), "language": language, "model": model_id, "version": version}
    digest.update(json.dumps(meta, sort_keys=True).encode())
    digest.update(CACHE_VERSION.encode())
    return digest.hexdigest()


def _to_json(explanation: Explanation) -> dict[str, Any]:
    return {
        "verdict": explanation.verdict,
        "confidence": explanation.confidence,
        "reasoning": explanation.reasoning,
        "language": explanation.language,
        "model": explanation.model,
        "evidence": explanation.evidence.to_dict() if explanation.evidence is not None else None,
        "extra": explanation.extra,
    }


def _from_json(data: dict[str, Any]) -> Explanation:
    names = {field.name for field in fields(Evidence)}
    evidence = data.get("evidence")
    return Explanation(
        verdict=bool(data["verdict"]),
        confidence=float(data["confidence"]),
        reasoning=str(data["reasoning"]),
        language=check_language(data["language"]),
        model=str(data["model"]),
        evidence=Evidence(**{k: v for k, v in evidence.items() if k in names}) if evidence else None,
        extra=dict(data.get("extra") or {}),
    )


class ExplanationCache:
    """A folder of cached explanations, one JSON file per key.

    Args:
        directory: the cache folder (default :func:`default_explanation_dir`).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_explanation_dir()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> Explanation | None:
        """The cached explanation for ``key``, or ``None`` (also for unreadable entries)."""
        path = self._path(key)
        try:
            return _from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: a miss
            return None

    def put(self, key: str, explanation: Explanation) -> None:
        """Store ``explanation`` under ``key`` (atomically)."""
        text = json.dumps(_to_json(explanation), ensure_ascii=False, indent=1, allow_nan=False)
        atomic_write_text(self._path(key), text + "\n")


class CachedExplainer:
    """Wraps an explainer so that each (pair, evidence, language) is explained once.

    Args:
        explainer: the backend to call on a miss.
        cache: where entries live (default: a cache in :func:`default_explanation_dir`).
        version: extra key material, e.g. a prompt version, so a changed prompt misses.
    """

    def __init__(
        self, explainer: Explainer, cache: ExplanationCache | None = None, *, version: str = ""
    ) -> None:
        self.explainer = explainer
        self.cache = cache or ExplanationCache()
        self.version = version
        self.model_id = explainer.model_id

    def explain(
        self, query: np.ndarray, reference: np.ndarray, evidence: Evidence, language: Language
    ) -> Explanation:
        """The cached explanation when there is one, else the backend's (then cached)."""
        key = cache_key(query, reference, evidence, language, self.model_id, self.version)
        cached = self.cache.get(key)
        if cached is not None:
            cached.evidence = evidence
            return cached
        explanation = self.explainer.explain(query, reference, evidence, language)
        self.cache.put(key, explanation)
        return explanation
