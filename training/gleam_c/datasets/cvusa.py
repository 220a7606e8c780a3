"""CVUSA (Workman et al. 2015, Zhai et al. 2017 split) in its published layout.

``<root>/splits/train-19zl.csv`` and ``val-19zl.csv`` list
``bingmap/19/<id>.jpg,streetview/panos/<id>.jpg,<annotation>`` per line.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .base import PairRecord, RetrievalSet

__all__ = ["cvusa_pairs", "cvusa_retrieval"]

_SPLIT_FILES = {"train": "train-19zl.csv", "val": "val-19zl.csv"}


def cvusa_pairs(root: str | os.PathLike[str], split: str = "train") -> list[PairRecord]:
    """(panorama, satellite) pairs of a split (``train`` or ``val``).

    Raises:
        FileNotFoundError: the split CSV is missing.
        ValueError: an unknown split.

    """
    if split not in _SPLIT_FILES:
        raise ValueError(f"CVUSA split must be one of {sorted(_SPLIT_FILES)}, got {split!r}")
    root = Path(root)
    split_file = root / "splits" / _SPLIT_FILES[split]
    if not split_file.is_file():
        raise FileNotFoundError(f"CVUSA split file {split_file} not found; check the dataset root")
    with split_file.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    return [
        PairRecord(str(root / row[1].strip()), str(root / row[0].strip()), "panorama", Path(row[0]).stem)
        for row in rows
    ]


def cvusa_retrieval(root: str | os.PathLike[str], split: str = "val") -> RetrievalSet:
    """A split's panoramas (the validation split by default) against its satellite images."""
    return RetrievalSet.from_pairs(cvusa_pairs(root, split))
