"""University-1652 (Zheng et al. 2020) in its published layout.

``<root>/train/{drone,satellite,street,google}/<building>/`` holds the 701 training
buildings; ``<root>/test/{query,gallery}_{drone,satellite,street}/<building>/`` the test
protocol (951 satellite gallery images for drone to satellite).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .base import PairRecord, RetrievalSet
from .folders import class_folder_pairs, class_folder_retrieval

__all__ = ["FOLDER_VIEWS", "university1652_pairs", "university1652_retrieval"]

FOLDER_VIEWS = {"drone": "uav", "street": "ground", "google": "ground", "satellite": "satellite"}
"""Folder name to gleam_geo view."""


def university1652_pairs(
    root: str | os.PathLike[str], folders: Sequence[str] = ("drone",)
) -> list[PairRecord]:
    """Training pairs: each image of ``folders`` with its building's satellite image.

    Args:
        root: the dataset root (holding ``train/``).
        folders: query folders to use: ``drone``, ``street`` and/or ``google``.

    """
    train = Path(root) / "train"
    records: list[PairRecord] = []
    for folder in folders:
        records.extend(class_folder_pairs(train / folder, train / "satellite", FOLDER_VIEWS[folder]))
    return records


def university1652_retrieval(
    root: str | os.PathLike[str], query: str = "drone", gallery: str = "satellite"
) -> RetrievalSet:
    """The test protocol ``test/query_<query>`` against ``test/gallery_<gallery>``."""
    test = Path(root) / "test"
    return class_folder_retrieval(
        test / f"query_{query}", test / f"gallery_{gallery}", FOLDER_VIEWS[query], FOLDER_VIEWS[gallery]
    )
