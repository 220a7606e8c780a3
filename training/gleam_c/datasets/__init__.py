"""Dataset adapters: each reads its dataset's published layout into :class:`PairRecord` lists."""

from __future__ import annotations

from .augment import PairAugment, augment_pair
from .base import (
    REFERENCE_VIEW,
    PairDataset,
    PairRecord,
    ReferenceImages,
    RetrievalSet,
    list_images,
    preprocessor,
)
from .cvact import cvact_pairs, cvact_retrieval
from .cvusa import cvusa_pairs, cvusa_retrieval
from .manifest import manifest_pairs, manifest_retrieval
from .sues200 import sues200_pairs, sues200_retrieval
from .synthetic import SyntheticPairs, ViewJitter, synthetic_view
from .university1652 import university1652_pairs, university1652_retrieval
from .vigor import vigor_pairs, vigor_retrieval

__all__ = [
    "REFERENCE_VIEW",
    "PairAugment",
    "PairDataset",
    "PairRecord",
    "ReferenceImages",
    "RetrievalSet",
    "SyntheticPairs",
    "ViewJitter",
    "augment_pair",
    "cvact_pairs",
    "cvact_retrieval",
    "cvusa_pairs",
    "cvusa_retrieval",
    "list_images",
    "manifest_pairs",
    "manifest_retrieval",
    "preprocessor",
    "sues200_pairs",
    "sues200_retrieval",
    "synthetic_view",
    "university1652_pairs",
    "university1652_retrieval",
    "vigor_pairs",
    "vigor_retrieval",
]
