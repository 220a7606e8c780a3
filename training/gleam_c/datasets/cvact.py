"""CVACT (Liu and Li 2019) images with split CSVs.

Images: ``<root>/ANU_data_small/streetview/<id>_grdView.jpg`` and
``<root>/ANU_data_small/satview_polish/<id>_satView_polish.jpg``. Splits:
``<root>/splits/<split>.csv`` with an ``id`` column and optional ``lat``/``lon`` columns
(exported once from the published ``ACT_data.mat``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .base import PairRecord, RetrievalSet

__all__ = ["cvact_pairs", "cvact_retrieval"]

_IMAGES = "ANU_data_small"


def _float_or_none(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def cvact_pairs(root: str | os.PathLike[str], split: str = "train") -> list[PairRecord]:
    """(panorama, satellite) pairs of ``splits/<split>.csv``.

    Raises:
        FileNotFoundError: the split CSV is missing.
        ValueError: the CSV has no ``id`` column.

    """
    root = Path(root)
    split_file = root / "splits" / f"{split}.csv"
    if not split_file.is_file():
        raise FileNotFoundError(f"CVACT split file {split_file} not found; check the dataset root")
    with split_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "id" not in rows[0]:
        raise ValueError(f"{split_file} needs an 'id' column, found {sorted(rows[0])}")
    images = root / _IMAGES
    return [
        PairRecord(
            str(images / "streetview" / f"{row['id']}_grdView.jpg"),
            str(images / "satview_polish" / f"{row['id']}_satView_polish.jpg"),
            "panorama",
            row["id"],
            _float_or_none(row.get("lat")),
            _float_or_none(row.get("lon")),
        )
        for row in rows
    ]


def cvact_retrieval(root: str | os.PathLike[str], split: str = "val") -> RetrievalSet:
    """A split's panoramas against its satellite images (one positive each)."""
    return RetrievalSet.from_pairs(cvact_pairs(root, split))
