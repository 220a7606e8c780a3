"""Class-folder layouts (``<split>/<view>/<place id>/<images>``) shared by University-1652 and SUES-200."""

from __future__ import annotations

import os
from pathlib import Path

from .base import PairRecord, RetrievalSet, list_images

__all__ = ["class_folder_pairs", "class_folder_retrieval", "class_folders"]


def class_folders(folder: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Map each place-id subfolder of ``folder`` to its sorted image paths.

    Raises:
        FileNotFoundError: ``folder`` does not exist (the dataset root or layout is wrong).

    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found; check the dataset root and its folder layout")
    return {
        entry.name: list_images(entry)
        for entry in sorted(folder.iterdir(), key=lambda p: p.name)
        if entry.is_dir()
    }


def class_folder_pairs(query_dir: Path, reference_dir: Path, view: str) -> list[PairRecord]:
    """Pair every query image with the first reference image of the same place folder."""
    references = class_folders(reference_dir)
    records = []
    for place, images in class_folders(query_dir).items():
        if not references.get(place):
            continue
        records.extend(PairRecord(image, references[place][0], view, place) for image in images)
    return records


def class_folder_retrieval(
    query_dir: Path, gallery_dir: Path, query_view: str, gallery_view: str
) -> RetrievalSet:
    """Every image under ``query_dir`` against every image under ``gallery_dir``, matched by place id."""
    queries = [
        PairRecord(image, "", query_view, place)
        for place, images in class_folders(query_dir).items()
        for image in images
    ]
    gallery = [(image, place) for place, images in class_folders(gallery_dir).items() for image in images]
    return RetrievalSet(
        queries, [image for image, _ in gallery], [place for _, place in gallery], gallery_view=gallery_view
    )
