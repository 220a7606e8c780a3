"""Build datasets and test sets from the source mappings of a training config.

A source is ``{type: <adapter>, ratio: <sampling weight>, ...}``; the other keys are the
adapter's arguments (``root``, ``split``...). Training pairs of image-file sources are
augmented (``augment: true``, the default; ``false``; or a mapping of
:class:`PairAugment` fields), seeded by ``seed``. Synthetic sources take ``rasters``,
``gsd_m``, ``chip_size_px``, ``overlap``, ``seed`` and the :class:`ViewJitter` fields;
their views are already jittered, so ``augment`` defaults to ``false`` there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gleam_geo.models import ModelCard
from gleam_geo.raster import TilingConfig

from .augment import PairAugment
from .base import PairDataset, PairRecord, RetrievalSet
from .cvact import cvact_pairs, cvact_retrieval
from .cvusa import cvusa_pairs, cvusa_retrieval
from .manifest import manifest_pairs, manifest_retrieval
from .sues200 import sues200_pairs, sues200_retrieval
from .synthetic import SyntheticPairs, ViewJitter
from .university1652 import university1652_pairs, university1652_retrieval
from .vigor import vigor_pairs, vigor_retrieval

__all__ = ["SOURCE_TYPES", "build_pairs", "build_retrieval"]

_PAIRS: dict[str, Callable[..., list[PairRecord]]] = {
    "university1652": university1652_pairs,
    "sues200": sues200_pairs,
    "vigor": vigor_pairs,
    "cvusa": cvusa_pairs,
    "cvact": cvact_pairs,
    "manifest": manifest_pairs,
}
_RETRIEVAL: dict[str, Callable[..., RetrievalSet]] = {
    "university1652": university1652_retrieval,
    "sues200": sues200_retrieval,
    "vigor": vigor_retrieval,
    "cvusa": cvusa_retrieval,
    "cvact": cvact_retrieval,
    "manifest": manifest_retrieval,
}
SOURCE_TYPES = (*_PAIRS, "synthetic")
_JITTER_KEYS = {"max_rotation_deg", "scale_range", "max_tilt", "photometric"}
_CONTROL_KEYS = {"type", "ratio", "augment"}


def _arguments(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = spec["type"]
    if kind not in SOURCE_TYPES:
        raise ValueError(f"unknown source type {kind!r}; expected one of {SOURCE_TYPES}")
    return kind, {k: v for k, v in spec.items() if k not in _CONTROL_KEYS}


def _synthetic(arguments: dict[str, Any], card: ModelCard) -> SyntheticPairs:
    jitter = {k: arguments.pop(k) for k in list(arguments) if k in _JITTER_KEYS}
    if "scale_range" in jitter:
        jitter["scale_range"] = tuple(jitter["scale_range"])
    tiling = TilingConfig(
        gsd_m=arguments.pop("gsd_m"),
        chip_size_px=arguments.pop("chip_size_px", card.chip_size_px),
        overlap=arguments.pop("overlap", 0.0),
    )
    return SyntheticPairs(
        arguments.pop("rasters"), card, tiling=tiling, jitter=ViewJitter(**jitter), **arguments
    )


def _augment(value: bool | dict[str, Any] | None) -> PairAugment | None:
    """The augmentation a source's ``augment`` value asks for."""
    if isinstance(value, dict):
        return PairAugment(**value)
    return PairAugment() if value else None


def build_pairs(spec: dict[str, Any], card: ModelCard) -> PairDataset:
    """The training pairs of a source mapping, preprocessed and augmented for ``card``."""
    kind, arguments = _arguments(spec)
    if kind == "synthetic":
        dataset = _synthetic(arguments, card)
        dataset.augment = _augment(spec.get("augment", False))
        return dataset
    seed = arguments.pop("seed", 0)
    return PairDataset(
        _PAIRS[kind](**arguments), card, augment=_augment(spec.get("augment", True)), seed=seed
    )


def build_retrieval(spec: dict[str, Any], card: ModelCard) -> RetrievalSet:
    """The test set of a source mapping (its adapter's test protocol)."""
    kind, arguments = _arguments(spec)
    if kind == "synthetic":
        return _synthetic(arguments, card).retrieval()
    return _RETRIEVAL[kind](**arguments)
