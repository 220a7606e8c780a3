"""Fixtures for the encoder tests: a tiny GLEAM-C network and real image crops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import rasterio
import torch

from gleam_geo.models import GleamCNet, ModelCard, TorchEncoder, default_gleam_c_card

TINY_ARCH = "resnet10t"
TINY_PX = 64


@pytest.fixture(scope="session")
def kampala_rgb(shared_data) -> np.ndarray:
    """The Kampala orthophoto at 0.3 m/px as an RGB uint8 (H, W, 3) array (768x512 px)."""
    with rasterio.open(shared_data / "kampala" / "kampala_z19.tif") as dataset:
        return np.ascontiguousarray(dataset.read([1, 2, 3]).transpose(1, 2, 0))


@pytest.fixture(scope="session")
def crops(kampala_rgb) -> list[np.ndarray]:
    """Seven real RGB crops of different sizes, some smaller and some larger than 64 px."""
    boxes = [(0, 0, 96), (50, 300, 130), (200, 100, 64), (300, 500, 150), (380, 640, 40), (100, 600, 80)]
    return [kampala_rgb[r : r + s, c : c + s] for r, c, s in boxes] + [kampala_rgb[256:456, 256:556]]


@pytest.fixture(scope="session")
def make_network() -> Callable[..., GleamCNet]:
    """Build a seeded GLEAM-C network (``resnet10t`` by default) without touching the global RNG."""

    def make(seed: int = 0, arch: str = TINY_ARCH) -> GleamCNet:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return GleamCNet(arch)

    return make


@pytest.fixture(scope="session")
def tiny_card() -> ModelCard:
    return default_gleam_c_card(TINY_ARCH, TINY_PX)


@pytest.fixture
def tiny_encoder(make_network, tiny_card) -> TorchEncoder:
    return TorchEncoder(make_network(), tiny_card, device="cpu")
