from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest
import rasterio
import torch

from gleam_geo.errors import CheckpointError
from gleam_geo.models import (
    GeoEmbedNet,
    TorchEncoder,
    geoembed_card,
    get_encoder,
    load_checkpoint,
    save_checkpoint,
)
from gleam_geo.models.geoembed import geoembed_weights_path, load_geoembed

CHIP = 128


@pytest.fixture(scope="module")
def geoembed():
    return get_encoder("geoembed-v3", device="cpu")


@pytest.fixture(scope="module")
def netherlands_rgb(shared_data) -> np.ndarray:
    """1000x1000 px of Dutch aerial imagery at 0.25 m/px (river, industry, fields)."""
    with rasterio.open(shared_data / "netherlands" / "nl_25cm.tif") as dataset:
        return np.ascontiguousarray(dataset.read([1, 2, 3]).transpose(1, 2, 0))


def test_loads_the_real_weights(geoembed):
    path = geoembed_weights_path()
    assert path.name == "v3.npz"
    assert geoembed.checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    card = geoembed.card
    assert (card.name, card.architecture, card.embed_dim) == ("geoembed-v3", "geoembed-resnet18", 256)
    assert {card.input_size(view) for view in card.image_size} == {(128, 128)}
    assert card.mean == card.std == (0.5, 0.5, 0.5)
    assert (card.gsd_m, card.chip_size_px, card.license) == (0.3, 128, "MIT")
    assert "self-supervised" in card.training_data


def test_embeddings_are_256_d_unit_vectors(geoembed, crops):
    vectors = geoembed.embed_images(crops, "satellite")
    assert vectors.shape == (len(crops), 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_stem_matches_a_numpy_reference_of_the_npz_weights(geoembed, netherlands_rgb):
    """conv 3x3 stride 1 + BatchNorm (eps 1e-5) + ReLU, computed from the raw npz tensors."""
    x = geoembed.preprocess(netherlands_rgb[300:428, 500:628], "satellite")
    with np.load(geoembed_weights_path()) as npz:
        w, gamma, beta = npz["bb.stem.0.weight"], npz["bb.stem.1.weight"], npz["bb.stem.1.bias"]
        mean, var = npz["bb.stem.1.running_mean"], npz["bb.stem.1.running_var"]
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(x, ((0, 0), (1, 1), (1, 1))), (3, 3), axis=(1, 2)
    )
    conv = np.einsum("chwij,ocij->ohw", windows, w, optimize=True)
    expected = np.maximum(
        (conv - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5) * gamma[:, None, None]
        + beta[:, None, None],
        0,
    )
    trunk = geoembed.network.trunk
    with torch.inference_mode():
        got = trunk.act1(trunk.bn1(trunk.conv1(torch.from_numpy(x)[None])))[0].numpy()
    assert got.shape == (64, 128, 128)
    np.testing.assert_allclose(got, expected, atol=2e-4 * np.abs(expected).max())


def _chips_and_queries(image: np.ndarray, stride: int, shift: int, grow: float, gain: float):
    """Grid chips, and for each a query window shifted diagonally, 10% larger, and brighter."""
    rng = np.random.default_rng(1)
    height, width = image.shape[:2]
    origins = [
        (r, c) for r in range(0, height - CHIP + 1, stride) for c in range(0, width - CHIP + 1, stride)
    ]
    size = round(CHIP * grow)
    chips, queries = [], []
    for r, c in origins:
        chips.append(image[r : r + CHIP, c : c + CHIP])
        dy, dx = rng.choice([-shift, shift], 2)
        r0 = int(np.clip(r + dy - (size - CHIP) // 2, 0, height - size))
        c0 = int(np.clip(c + dx - (size - CHIP) // 2, 0, width - size))
        window = image[r0 : r0 + size, c0 : c0 + size].astype(np.float32)
        queries.append(np.clip(window * gain + 8, 0, 255).astype(np.uint8))
    return chips, queries


def _rank1(encoder, chips, queries) -> float:
    gallery = encoder.embed_images(chips, "satellite")
    similarity = encoder.embed_images(queries, "uav") @ gallery.T
    return float((similarity.argmax(axis=1) == np.arange(len(chips))).mean())


def test_retrieval_finds_jittered_crops_and_beats_random_weights(geoembed, netherlands_rgb):
    """A wrong weight mapping gives near-random features; the port must retrieve clearly better."""
    chips, queries = _chips_and_queries(netherlands_rgb, stride=160, shift=13, grow=1.1, gain=1.2)
    assert len(chips) == 36
    trained = _rank1(geoembed, chips, queries)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        untrained = TorchEncoder(GeoEmbedNet(), geoembed_card(), device="cpu", checksum="random")
    random_init = _rank1(untrained, chips, queries)
    assert trained >= 0.8, f"geoembed-v3 rank-1 {trained:.3f}"
    assert trained - random_init >= 0.25, f"geoembed-v3 {trained:.3f} vs random init {random_init:.3f}"


def test_checkpoint_round_trip_of_the_port(tmp_path, geoembed, crops):
    save_checkpoint(geoembed.network, geoembed.card, tmp_path / "geoembed")
    loaded = load_checkpoint(tmp_path / "geoembed.safetensors", device="cpu")
    assert isinstance(loaded.network, GeoEmbedNet) and loaded.card == geoembed.card
    few = crops[:3]
    np.testing.assert_array_equal(loaded.embed_images(few, "uav"), geoembed.embed_images(few, "uav"))


def test_missing_package_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "geoembed" else real_find_spec(name, *a)
    )
    with pytest.raises(CheckpointError, match="pip install --no-deps geoembed"):
        load_geoembed(device="cpu")
