"""VIGOR (Zhu et al. 2021) in its published layout.

``<root>/<City>/panorama/*.jpg`` and ``<root>/<City>/satellite/satellite_<lat>_<lon>.png``,
with split files under ``<root>/splits/<City>/``. Each split line is a panorama followed by
four (satellite, dx, dy) triples: the positive, then three semi-positives.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import PairRecord, RetrievalSet, list_images

__all__ = ["CITIES", "vigor_pairs", "vigor_retrieval"]

CITIES = {
    ("same_area", "train"): ("NewYork", "Seattle", "SanFrancisco", "Chicago"),
    ("same_area", "test"): ("NewYork", "Seattle", "SanFrancisco", "Chicago"),
    ("cross_area", "train"): ("NewYork", "Seattle"),
    ("cross_area", "test"): ("SanFrancisco", "Chicago"),
}
"""Cities of each (mode, split)."""

_SPLIT_FILES = {
    ("same_area", "train"): "same_area_balanced_train.txt",
    ("same_area", "test"): "same_area_balanced_test.txt",
    ("cross_area", "train"): "pano_label_balanced.txt",
    ("cross_area", "test"): "pano_label_balanced.txt",
}


def _satellite_latlon(name: str) -> tuple[float, float]:
    """Latitude and longitude from a ``satellite_<lat>_<lon>.png`` name."""
    _, lat, lon = Path(name).stem.split("_")
    return float(lat), float(lon)


def _check_mode(mode: str, split: str) -> None:
    if (mode, split) not in CITIES:
        raise ValueError(
            f"VIGOR mode must be same_area or cross_area and split train or test, got {mode}/{split}"
        )


def vigor_pairs(
    root: str | os.PathLike[str], mode: str = "same_area", split: str = "train"
) -> list[PairRecord]:
    """(panorama, positive satellite) pairs with their semi-positives and the satellite's coordinates.

    Raises:
        FileNotFoundError: a split file is missing.
        ValueError: an unknown mode or split.

    """
    _check_mode(mode, split)
    root = Path(root)
    records = []
    for city in CITIES[mode, split]:
        split_file = root / "splits" / city / _SPLIT_FILES[mode, split]
        if not split_file.is_file():
            raise FileNotFoundError(f"VIGOR split file {split_file} not found; check the dataset root")
        satellites = root / city / "satellite"
        for line in split_file.read_text().splitlines():
            fields = line.split()
            if not fields:
                continue
            positive, *semi = fields[1::3]
            lat, lon = _satellite_latlon(positive)
            records.append(
                PairRecord(
                    str(root / city / "panorama" / fields[0]),
                    str(satellites / positive),
                    "panorama",
                    f"{city}/{positive}",
                    lat,
                    lon,
                    tuple(str(satellites / name) for name in semi),
                )
            )
    return records


def vigor_retrieval(
    root: str | os.PathLike[str], mode: str = "same_area", split: str = "test"
) -> RetrievalSet:
    """A split's panoramas (the test split by default) against every satellite image of its cities."""
    queries = vigor_pairs(root, mode, split)
    gallery = [path for city in CITIES[mode, split] for path in list_images(Path(root) / city / "satellite")]
    groups = [f"{Path(path).parent.parent.name}/{Path(path).name}" for path in gallery]
    return RetrievalSet(queries, gallery, groups)
