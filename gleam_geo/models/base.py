"""The encoder interface every retrieval model implements.

Preprocessing is plain numpy so reader threads can do it while the encoder runs; the
encoder only sees ready batches. Embeddings come back L2-normalised, float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..records import View
from .card import ModelCard

__all__ = ["Encoder"]


@runtime_checkable
class Encoder(Protocol):
    """A shared image encoder for satellite chips and every query view.

    Attributes:
        card: the model card (architecture, sizes, normalisation, embedding dim).
        model_id: id recorded in indexes built with this encoder (``card.name``).
        checksum: SHA-256 of the weights; an index refuses an encoder with another one.
        device: the torch device the network runs on, as a string ("cpu", "cuda", "mps").
    """

    card: ModelCard
    model_id: str
    checksum: str
    device: str

    @property
    def embed_dim(self) -> int:
        """Length of the embedding vectors."""
        ...

    def preprocess(self, image: np.ndarray, view: View) -> np.ndarray:
        """Turn an RGB uint8 ``(H, W, 3)`` image into a float32 ``(3, h, w)`` input for ``view``."""
        ...

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """Embed a preprocessed float32 ``(N, 3, h, w)`` batch into ``(N, D)`` unit vectors."""
        ...

    def embed_images(self, images: Sequence[np.ndarray], view: View) -> np.ndarray:
        """Preprocess and embed RGB uint8 images of one view; returns ``(N, D)`` unit vectors."""
        ...
