"""Paired augmentation for image-file sources: geometry kept consistent between query and reference.

As in Sample4Geo: a horizontal flip mirrors both images; a rotation by ``k`` quarter turns
turns the satellite reference and, for a panorama query, rolls the panorama by ``k``
quarters of its width so both still show the same bearings. Other query views have no
known heading, so only the reference turns. Colour changes are drawn per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PairAugment", "augment_pair", "photometric_change"]


@dataclass(frozen=True)
class PairAugment:
    """How training pairs of image-file sources are augmented.

    Attributes:
        flip: probability of mirroring both images left to right.
        rotate: probability of turning the reference by 1 to 3 quarter turns (panoramas roll along).
        photometric: strength of the per-image brightness, contrast, saturation and gamma change (0 to 1).

    """

    flip: float = 0.5
    rotate: float = 0.75
    photometric: float = 0.2


def augment_pair(
    query: np.ndarray, reference: np.ndarray, view: str, augment: PairAugment, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one RGB uint8 (query, reference) pair; ``view`` is the query's view."""
    if rng.random() < augment.flip:
        query, reference = query[:, ::-1], reference[:, ::-1]
    if rng.random() < augment.rotate:
        turns = int(rng.integers(1, 4))
        reference = np.rot90(reference, turns)
        if view == "panorama":
            query = np.roll(query, -(query.shape[1] // 4) * turns, axis=1)
    if augment.photometric > 0:
        query = photometric_change(query, augment.photometric, rng)
        reference = photometric_change(reference, augment.photometric, rng)
    return np.ascontiguousarray(query), np.ascontiguousarray(reference)


def photometric_change(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, saturation and gamma change of an RGB uint8 image."""
    pixels = image.astype(np.float32) / 255.0
    grey = pixels.mean(axis=2, keepdims=True)
    pixels = grey + (pixels - grey) * (1 + rng.uniform(-strength, strength))
    pixels = (pixels - pixels.mean()) * (1 + rng.uniform(-strength, strength)) + pixels.mean()
    pixels = pixels + rng.uniform(-strength, strength) * 0.5
    pixels = np.clip(pixels, 0, 1) ** np.exp(rng.uniform(-strength, strength))
    return np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
