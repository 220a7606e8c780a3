"""The torchgeo baseline: ``RasterDataset`` + ``GridGeoSampler`` + ``DataLoader`` over one raster.

Set up the way torchgeo's documentation does it, with the settings matched to ours: the
raster's own CRS and resolution, the same chip size and stride in pixels, the RGB bands
only, the same batch size and worker count, and the same normalisation to float32 NCHW,
done in the workers as a dataset transform.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import rasterio

_RGB = ("R", "G", "B")


def import_torchgeo() -> ModuleType:
    """Import torchgeo; torchvision first goes through gleam_geo's shim (CPU torch wheels)."""
    from gleam_geo._compat.torchvision_shim import import_torchvision

    import_torchvision()
    import torchgeo

    return torchgeo


class Normalise:
    """Dataset transform: ``image`` (C, H, W) float32 in 0-255 to ``(x / 255 - mean) / std``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        import torch

        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample["image"] = (sample["image"] / 255.0 - self.mean) / self.std
        return sample


def make_dataset(path: Path, mean: Sequence[float], std: Sequence[float]) -> Any:
    """A ``RasterDataset`` over the one file ``path``, reading its first three (RGB) bands."""
    import_torchgeo()
    from torchgeo.datasets import RasterDataset

    with rasterio.open(path) as dataset:
        count = dataset.count
    names = _RGB + tuple(f"B{i}" for i in range(4, count + 1))
    cls = type(
        "BenchRaster",
        (RasterDataset,),
        {"filename_glob": path.name, "is_image": True, "all_bands": names, "rgb_bands": _RGB},
    )
    return cls(paths=[os.fspath(path)], bands=_RGB, transforms=Normalise(mean, std))


def warps(dataset: Any, path: Path) -> bool:
    """Whether torchgeo reads ``path`` through a WarpedVRT (it does when the pixels are not square)."""
    from rasterio.vrt import WarpedVRT

    handle = dataset._load_warp_file(os.fspath(path))
    try:
        return isinstance(handle, WarpedVRT)
    finally:
        handle.close()


def iter_batches(
    dataset: Any, chip_px: int, overlap: float, batch_size: int, num_workers: int
) -> Iterator[np.ndarray]:
    """Yield float32 NCHW batches of a grid of ``chip_px`` chips, ``overlap`` shared with neighbours."""
    from torch.utils.data import DataLoader
    from torchgeo.datasets import stack_samples
    from torchgeo.samplers import GridGeoSampler, Units

    stride = max(1, round(chip_px * (1 - overlap)))
    sampler = GridGeoSampler(dataset, size=chip_px, stride=stride, units=Units.PIXELS)
    loader = DataLoader(
        dataset, sampler=sampler, batch_size=batch_size, num_workers=num_workers, collate_fn=stack_samples
    )
    for batch in loader:
        yield batch["image"].numpy()
