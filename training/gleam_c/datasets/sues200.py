"""SUES-200 (Zhu et al. 2023) after its official train/test split script.

``<root>/Training/<height>/{drone,satellite}/<place>/`` and
``<root>/Testing/<height>/{query,gallery}_{drone,satellite}/<place>/``, for flight
heights 150, 200, 250 and 300 m (120 training and 80 test places).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .base import PairRecord, RetrievalSet
from .folders import class_folder_pairs, class_folder_retrieval

__all__ = ["HEIGHTS", "sues200_pairs", "sues200_retrieval"]

HEIGHTS = (150, 200, 250, 300)
_VIEWS = {"drone": "uav", "satellite": "satellite"}


def sues200_pairs(root: str | os.PathLike[str], heights: Sequence[int] = HEIGHTS) -> list[PairRecord]:
    """Training pairs: each drone image with its place's satellite image, for each height."""
    records: list[PairRecord] = []
    for height in heights:
        split = Path(root) / "Training" / str(height)
        records.extend(class_folder_pairs(split / "drone", split / "satellite", "uav"))
    return records


def sues200_retrieval(
    root: str | os.PathLike[str], height: int = 150, query: str = "drone", gallery: str = "satellite"
) -> RetrievalSet:
    """The test protocol at one flight height."""
    split = Path(root) / "Testing" / str(height)
    return class_folder_retrieval(
        split / f"query_{query}", split / f"gallery_{gallery}", _VIEWS[query], _VIEWS[gallery]
    )
