"""Pair records and the dataset that turns them into preprocessed tensors.

Every adapter returns :class:`PairRecord` lists read from its dataset's own layout; a
:class:`PairDataset` loads and preprocesses them with the encoder card's own
preprocessing (:meth:`gleam_geo.models.TorchEncoder.preprocess`), so training sees
exactly what inference sees.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from gleam_geo.io.images import load_image
from gleam_geo.models import ModelCard, TorchEncoder

from .augment import PairAugment, augment_pair

__all__ = [
    "REFERENCE_VIEW",
    "PairDataset",
    "PairRecord",
    "ReferenceImages",
    "RetrievalSet",
    "list_images",
    "preprocessor",
]

REFERENCE_VIEW = "satellite"
_AUGMENT_STREAM = 1  # keeps augmentation draws apart from a subclass's own per-pair draws


@dataclass(frozen=True)
class PairRecord:
    """One (query view, satellite reference) training or test pair.

    Attributes:
        query: path of the query image (or a source-specific key for synthetic pairs).
        reference: path of the matching satellite image (or key).
        view: the query's view, one of :data:`gleam_geo.records.VIEWS`.
        group: identity of the place; pairs of one group never serve as each other's negatives.
        lat: latitude of the place in degrees, when known.
        lon: longitude of the place in degrees, when known.
        semi_positives: other references that also count as hits (VIGOR).

    """

    query: str
    reference: str
    view: str
    group: str
    lat: float | None = None
    lon: float | None = None
    semi_positives: tuple[str, ...] = ()


def preprocessor(card: ModelCard) -> TorchEncoder:
    """An encoder used only for its :meth:`~gleam_geo.models.TorchEncoder.preprocess` (no network).

    It is cheap to pickle into data-loader workers, unlike one wrapping the network.
    """
    return TorchEncoder(nn.Identity(), card, device="cpu", checksum="preprocess-only")


class PairDataset(Dataset):
    """Pairs as ``(query, reference, index)`` float tensors, preprocessed for ``card``.

    Subclasses that do not read image files override :meth:`query_image` and
    :meth:`reference_image`.
    """

    def __init__(
        self,
        records: Sequence[PairRecord],
        card: ModelCard,
        *,
        augment: PairAugment | None = None,
        seed: int = 0,
    ) -> None:
        """Hold ``records`` and preprocess their images for ``card``.

        Args:
            records: the pairs.
            card: the encoder card whose preprocessing the tensors get.
            augment: paired augmentation of the training images (``None``: none).
            seed: seeds the augmentation with the epoch and pair index, so a resumed run sees
                the same images.

        """
        if not records:
            raise ValueError("a pair dataset needs at least one pair; check the dataset root and split")
        self.records = list(records)
        self.card = card
        self.encoder = preprocessor(card)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch, which seeds random views of sources that synthesise them."""
        self.epoch = epoch

    def query_image(self, index: int) -> np.ndarray:
        """The RGB uint8 query image of pair ``index``."""
        return load_image(self.records[index].query).pixels

    def reference_image(self, index: int) -> np.ndarray:
        """The RGB uint8 satellite image of pair ``index``."""
        return load_image(self.records[index].reference).pixels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        record = self.records[index]
        query, reference = self.query_image(index), self.reference_image(index)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch + 1, index, _AUGMENT_STREAM])
            query, reference = augment_pair(query, reference, record.view, self.augment, rng)
        query = self.encoder.preprocess(query, record.view)
        reference = self.encoder.preprocess(reference, REFERENCE_VIEW)
        return torch.from_numpy(query), torch.from_numpy(reference), index

    def groups(self) -> np.ndarray:
        """Group id of every pair, as a string array."""
        return np.asarray([record.group for record in self.records])

    def coordinates(self) -> np.ndarray | None:
        """``(N, 2)`` latitude/longitude of every pair, or ``None`` unless all pairs have them."""
        if any(record.lat is None or record.lon is None for record in self.records):
            return None
        return np.asarray([(record.lat, record.lon) for record in self.records], dtype=np.float64)


class ReferenceImages(Dataset):
    """The preprocessed reference image of each pair of a :class:`PairDataset`, for embedding."""

    def __init__(self, pairs: PairDataset) -> None:
        """View ``pairs``' references."""
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.pairs.reference_image(index)
        return torch.from_numpy(self.pairs.encoder.preprocess(image, REFERENCE_VIEW))


def _load_file(path: str) -> np.ndarray:
    return load_image(path).pixels


@dataclass
class RetrievalSet:
    """A test split: queries, a gallery, and which gallery items each query should find.

    A gallery item is a positive of a query when their groups are equal; a gallery key in
    the query's ``semi_positives`` counts for the hit rate only (VIGOR).

    Attributes:
        queries: the queries (their ``reference`` field is not used).
        gallery: gallery keys (image paths for file datasets).
        gallery_groups: the group of each gallery item.
        gallery_view: the view of the gallery images.
        query_image: loads query ``i``'s RGB uint8 image (default: read ``queries[i].query``).
        gallery_image: loads gallery item ``j``'s image (default: read ``gallery[j]``).

    """

    queries: list[PairRecord]
    gallery: list[str]
    gallery_groups: list[str]
    gallery_view: str = REFERENCE_VIEW
    query_image: Callable[[int], np.ndarray] | None = field(default=None, repr=False)
    gallery_image: Callable[[int], np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.gallery) != len(self.gallery_groups):
            raise ValueError("gallery and gallery_groups must have the same length")
        if self.query_image is None:
            self.query_image = lambda i: _load_file(self.queries[i].query)
        if self.gallery_image is None:
            self.gallery_image = lambda j: _load_file(self.gallery[j])

    @classmethod
    def from_pairs(cls, records: Sequence[PairRecord]) -> RetrievalSet:
        """One query per pair; the gallery is the distinct references, in first-seen order."""
        gallery: dict[str, str] = {}
        for record in records:
            gallery.setdefault(record.reference, record.group)
        return cls(list(records), list(gallery), list(gallery.values()))


def list_images(folder: str | os.PathLike[str]) -> list[str]:
    """Sorted paths of the image files (jpg, jpeg, png, tif, webp) directly in ``folder``."""
    names = sorted(os.listdir(folder))
    return [os.path.join(folder, name) for name in names if name.lower().endswith(_IMAGE_SUFFIXES)]


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
