"""Embed reference chips: raster reads overlapped with the encoder.

Reader threads (see :func:`gleam_geo.raster.iter_chip_batches`) read windows and
preprocess them into batches while the encoder runs on the previous batch, so on a GPU
the encoder does not wait for I/O. On a CPU the readers run at the lowest priority, so they
use the moments the encoder leaves idle instead of competing with it for the cores.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .models.base import Encoder
from .progress import Progress, ProgressCallback
from .raster import RasterCatalog, TilingConfig, iter_chip_batches
from .records import Chip

__all__ = ["embed_chips"]


def embed_chips(
    catalog: RasterCatalog,
    encoder: Encoder,
    tiling: TilingConfig,
    *,
    batch_size: int = 32,
    num_workers: int = 2,
    progress: ProgressCallback | None = None,
) -> Iterator[tuple[list[Chip], np.ndarray]]:
    """Yield ``(chips, embeddings)`` batches for every valid chip of ``catalog``.

    Chips are embedded as the ``satellite`` view. Embeddings are L2-normalised float32.
    Progress is reported for two stages: "chipping" (chips read, ahead of the encoder)
    and "embedding" (chips embedded); a cancel is seen at the next report of either.
    """

    def preprocess(pixels: np.ndarray) -> np.ndarray:
        return encoder.preprocess(pixels, "satellite")

    batches = iter_chip_batches(
        catalog,
        tiling,
        preprocess,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        yield_cpu=encoder.device == "cpu",
    )
    embedded = Progress(progress, "embedding", None)
    try:
        for batch in batches:
            vectors = encoder.embed_batch(batch.pixels)
            embedded.advance(len(batch.chips))  # also where a cancel between batches is seen
            yield batch.chips, vectors
    finally:
        batches.close()
