"""A generic pair manifest: a CSV or Parquet table with one row per pair.

Columns: ``query_path``, ``reference_path``, ``view``; optional ``lat``, ``lon``, ``group``
(default: the reference path) and ``split``. Relative paths are taken from the
manifest's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .base import PairRecord, RetrievalSet

__all__ = ["REQUIRED_COLUMNS", "manifest_pairs", "manifest_retrieval"]

REQUIRED_COLUMNS = ("query_path", "reference_path", "view")


def _optional_float(value: object) -> float | None:
    return None if pd.isna(value) else float(value)


def manifest_pairs(path: str | os.PathLike[str], split: str | None = None) -> list[PairRecord]:
    """Read the pairs of a manifest, optionally only the rows whose ``split`` equals ``split``.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: a required column is missing.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair manifest {path} not found")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; a manifest needs {list(REQUIRED_COLUMNS)}")
    if split is not None:
        if "split" not in table.columns:
            raise ValueError(f"{path} has no 'split' column to select {split!r} from")
        table = table[table["split"] == split]
    base = path.parent
    records = []
    for row in table.to_dict("records"):
        query, reference = (str(base / str(row[key])) for key in ("query_path", "reference_path"))
        group = row.get("group")
        records.append(
            PairRecord(
                query,
                reference,
                str(row["view"]),
                reference if group is None or pd.isna(group) else str(group),
                _optional_float(row.get("lat")),
                _optional_float(row.get("lon")),
            )
        )
    return records


def manifest_retrieval(path: str | os.PathLike[str], split: str | None = None) -> RetrievalSet:
    """The manifest's queries against its distinct references."""
    return RetrievalSet.from_pairs(manifest_pairs(path, split))
