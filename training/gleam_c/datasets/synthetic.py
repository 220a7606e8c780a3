"""Self-supervised pairs from any georeferenced raster: synthetic UAV views of reference chips.

The raster is cut into reference chips with the library's own tiler. For each chip a
context twice its size, centred on it, is read as well; a UAV-like query is cut from that
context with a random rotation, scale and perspective tilt, then photometrically changed.
Each epoch draws new views (the random state is seeded by seed, epoch and pair index).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import rasterio
import shapely

from gleam_geo.models import ModelCard
from gleam_geo.raster import RasterCatalog, TilingConfig, chip_grid, read_chip
from gleam_geo.records import Chip, PixelWindow

from .augment import photometric_change
from .base import PairDataset, PairRecord, RetrievalSet

__all__ = ["SyntheticPairs", "ViewJitter", "synthetic_view"]

_CONTEXT = 2
_EVAL_EPOCH = -1


@dataclass(frozen=True)
class ViewJitter:
    """How far synthetic UAV views depart from their reference chip.

    Attributes:
        max_rotation_deg: rotation drawn uniformly in ``[-max, max]`` degrees.
        scale_range: footprint scale (above 1 sees more ground) drawn uniformly in this range.
        max_tilt: corner displacement, as a fraction of the footprint side, for perspective.
        photometric: strength of the brightness, contrast, saturation and gamma changes (0 to 1).

    """

    max_rotation_deg: float = 180.0
    scale_range: tuple[float, float] = (0.8, 1.25)
    max_tilt: float = 0.15
    photometric: float = 0.3


def synthetic_view(
    context: np.ndarray, size_px: int, jitter: ViewJitter, rng: np.random.Generator
) -> np.ndarray:
    """Cut a ``size_px`` square UAV-like view from the centre of an RGB uint8 ``context`` image.

    The untransformed footprint is the central ``context / 2`` square (the reference chip).
    """
    height, width = context.shape[:2]
    side = min(height, width) / _CONTEXT * rng.uniform(*jitter.scale_range)
    angle = np.deg2rad(rng.uniform(-jitter.max_rotation_deg, jitter.max_rotation_deg))
    half = side / 2
    square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    square += rng.uniform(-jitter.max_tilt, jitter.max_tilt, size=(4, 2)) * side
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = square @ rotation.T + np.array([width / 2, height / 2])
    target = np.array([[0, 0], [size_px, 0], [size_px, size_px], [0, size_px]], dtype=np.float32)
    warp = cv2.getPerspectiveTransform(source.astype(np.float32), target)
    view = cv2.warpPerspective(
        context, warp, (size_px, size_px), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT
    )
    return photometric_change(view, jitter.photometric, rng)


def _context_chip(chip: Chip) -> Chip:
    """The chip twice as large around the same centre (read boundless at raster edges)."""
    window = chip.window
    return dataclasses.replace(
        chip,
        window=PixelWindow(
            window.col_off - window.width // 2,
            window.row_off - window.height // 2,
            window.width * _CONTEXT,
            window.height * _CONTEXT,
        ),
        size_px=(chip.size_px[0] * _CONTEXT, chip.size_px[1] * _CONTEXT),
        tile=None,
    )


class SyntheticPairs(PairDataset):
    """Synthetic UAV views paired with reference chips cut from georeferenced rasters.

    All chips are read once, at construction, and kept in memory (meant for rasters of a
    few thousand chips).
    """

    def __init__(
        self,
        rasters: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        card: ModelCard,
        *,
        tiling: TilingConfig,
        jitter: ViewJitter | None = None,
        min_valid_fraction: float = 0.95,
        seed: int = 0,
    ) -> None:
        """Read every chip of ``rasters`` with ``tiling`` (a native scheme) and its context.

        Args:
            rasters: raster files, folders or globs (see :meth:`RasterCatalog.from_paths`).
            card: the encoder card whose preprocessing the tensors get.
            tiling: reference chip size and ground resolution.
            jitter: how synthetic views are drawn; default :class:`ViewJitter`.
            min_valid_fraction: chips with less data than this are skipped (the context around
                a chip at a raster edge may hold no-data).
            seed: seeds every random view with the epoch and pair index.

        """
        if tiling.scheme != "native":
            raise ValueError("synthetic pairs need a native tiling scheme")
        self.jitter = jitter or ViewJitter()
        self.size_px = tiling.chip_size_px
        self.chips: list[np.ndarray] = []
        self.contexts: list[np.ndarray] = []
        records = []
        for source in RasterCatalog.from_paths(rasters):
            with rasterio.open(source.path) as dataset:
                for chip in chip_grid(source, tiling):
                    image, valid = read_chip(dataset, source, chip)
                    if valid < min_valid_fraction:
                        continue
                    context, _ = read_chip(dataset, source, _context_chip(chip))
                    centre = shapely.from_wkt(chip.wgs84_footprint_wkt).centroid
                    records.append(
                        PairRecord(chip.chip_id, chip.chip_id, "uav", chip.chip_id, centre.y, centre.x)
                    )
                    self.chips.append(image)
                    self.contexts.append(context)
        super().__init__(records, card, seed=seed)

    def _rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch + 1, index])

    def query_image(self, index: int) -> np.ndarray:
        """A fresh synthetic UAV view of chip ``index`` for the current epoch."""
        return synthetic_view(self.contexts[index], self.size_px, self.jitter, self._rng(self.epoch, index))

    def reference_image(self, index: int) -> np.ndarray:
        """The reference chip ``index``."""
        return self.chips[index]

    def retrieval(self) -> RetrievalSet:
        """One fixed synthetic view per chip (independent of the epoch) against all the chips."""

        def query(index: int) -> np.ndarray:
            return synthetic_view(
                self.contexts[index], self.size_px, self.jitter, self._rng(_EVAL_EPOCH, index)
            )

        return RetrievalSet(
            self.records,
            [record.reference for record in self.records],
            [record.group for record in self.records],
            query_image=query,
            gallery_image=self.reference_image,
        )
