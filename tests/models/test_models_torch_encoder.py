from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from gleam_geo.errors import CheckpointError
from gleam_geo.models import Encoder, TorchEncoder, default_gleam_c_card
from gleam_geo.models.device import default_batch_size
from gleam_geo.models.torch_encoder import weights_checksum


def test_embeddings_are_unit_float32_vectors(tiny_encoder, crops):
    vectors = tiny_encoder.embed_images(crops, "uav")
    assert vectors.shape == (len(crops), tiny_encoder.embed_dim) == (7, 512)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3  # different images, different vectors


def test_torch_encoder_satisfies_the_encoder_protocol(tiny_encoder):
    assert isinstance(tiny_encoder, Encoder)
    assert tiny_encoder.model_id == tiny_encoder.card.name == "gleam-c-resnet10t-64"
    assert tiny_encoder.device == "cpu"


def test_default_card_feeds_panoramas_at_384x768(make_network):
    encoder = TorchEncoder(make_network(), default_gleam_c_card(), device="cpu", checksum="unused")
    panorama = np.zeros((512, 2048, 3), np.uint8)
    assert encoder.preprocess(panorama, "panorama").shape == (3, 384, 768)
    assert encoder.preprocess(panorama, "satellite").shape == (3, 384, 384)
    assert encoder.preprocess(panorama, "some_new_view").shape == (3, 384, 384)


def test_preprocess_is_deterministic_and_thread_safe(tiny_encoder, crops):
    first = [tiny_encoder.preprocess(crop, "satellite") for crop in crops]
    with ThreadPoolExecutor(4) as pool:
        again = list(pool.map(lambda crop: tiny_encoder.preprocess(crop, "satellite"), crops * 3))
    for expected, got in zip(first * 3, again, strict=True):
        assert got.dtype == np.float32 and got.shape == (3, 64, 64) and got.flags.c_contiguous
        np.testing.assert_array_equal(expected, got)


def test_preprocess_normalises_with_the_card_mean_and_std(tiny_encoder):
    image = np.empty((64, 64, 3), np.uint8)
    image[...] = (0, 128, 255)
    out = tiny_encoder.preprocess(image, "satellite")
    expected = (np.array([0, 128, 255]) / 255 - np.array(tiny_encoder.card.mean)) / np.array(
        tiny_encoder.card.std
    )
    np.testing.assert_allclose(out[:, 10, 10], expected, rtol=1e-6)
    np.testing.assert_allclose(out.reshape(3, -1).std(axis=1), 0, atol=1e-6)


def test_preprocess_of_plane_views_equals_the_per_pixel_formula(tiny_encoder):
    rng = np.random.default_rng(0)
    strip = rng.integers(0, 256, (3, 64, 150), dtype=np.uint8)  # planes, as the raster reader holds them
    image = strip[:, :, 40:104].transpose(1, 2, 0)  # a channels-last view, not contiguous
    mean = np.asarray(tiny_encoder.card.mean, dtype=np.float32)
    std = np.asarray(tiny_encoder.card.std, dtype=np.float32)
    contiguous = np.ascontiguousarray(image)
    expected = ((contiguous.astype(np.float32) / np.float32(255.0) - mean) / std).transpose(2, 0, 1)
    np.testing.assert_array_equal(tiny_encoder.preprocess(image, "satellite"), expected)
    np.testing.assert_array_equal(tiny_encoder.preprocess(contiguous, "satellite"), expected)


def test_shrinking_averages_instead_of_aliasing(tiny_encoder):
    checkerboard = ((np.indices((128, 128)).sum(axis=0) % 2) * 255).astype(np.uint8)
    out = tiny_encoder.preprocess(np.repeat(checkerboard[..., None], 3, axis=2), "satellite")
    gray = (0.5 - np.array(tiny_encoder.card.mean)) / np.array(tiny_encoder.card.std)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), gray, atol=0.01)
    assert out.std(axis=(1, 2)).max() < 0.02  # area averaging: flat grey, no moire


def test_enlarging_interpolates_smoothly(tiny_encoder):
    ramp = np.tile(np.linspace(0, 255, 16).astype(np.uint8)[None, :, None], (16, 1, 3))
    row = tiny_encoder.preprocess(ramp, "satellite")[0, 32]
    steps = np.diff(row)
    assert (steps >= -1e-6).all() and len(np.unique(np.round(row, 4))) > 40  # bilinear, not blocky


@pytest.mark.parametrize(
    "image",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)],
    ids=["gray", "rgba", "float"],
)
def test_preprocess_refuses_non_rgb_uint8(tiny_encoder, image):
    with pytest.raises(ValueError, match="RGB uint8"):
        tiny_encoder.preprocess(image, "satellite")


def test_embed_batch_splits_large_inputs_into_batch_size_pieces(tiny_encoder, crops):
    batch = np.stack([tiny_encoder.preprocess(crop, "ground") for crop in crops])
    whole = tiny_encoder.embed_batch(batch)
    sizes = []
    handle = tiny_encoder.network.register_forward_hook(lambda _m, args, _o: sizes.append(args[0].shape[0]))
    tiny_encoder.batch_size = 3
    pieces = tiny_encoder.embed_batch(batch)
    handle.remove()
    assert sizes == [3, 3, 1]
    np.testing.assert_allclose(pieces, whole, atol=1e-5)


def test_embed_images_equals_embed_batch_of_preprocessed(tiny_encoder, crops):
    direct = tiny_encoder.embed_batch(np.stack([tiny_encoder.preprocess(c, "uav") for c in crops]))
    tiny_encoder.batch_size = 2
    np.testing.assert_allclose(tiny_encoder.embed_images(crops, "uav"), direct, atol=1e-5)


def test_no_images_give_an_empty_matrix(tiny_encoder):
    empty = tiny_encoder.embed_images([], "uav")
    assert empty.shape == (0, 512) and empty.dtype == np.float32
    assert tiny_encoder.embed_batch(np.zeros((0, 3, 64, 64), np.float32)).shape == (0, 512)


def test_embed_batch_refuses_wrong_layout(tiny_encoder):
    with pytest.raises(ValueError, match=r"\(N, 3, h, w\)"):
        tiny_encoder.embed_batch(np.zeros((2, 64, 64, 3), np.float32))


def test_a_card_with_the_wrong_embed_dim_is_reported(make_network, tiny_card, crops):
    card = default_gleam_c_card("resnet10t", 64)
    card.embed_dim = 256
    encoder = TorchEncoder(make_network(), card, device="cpu")
    with pytest.raises(CheckpointError, match="says 256-d"):
        encoder.embed_images(crops[:1], "uav")


def test_checksum_identifies_the_weights(make_network, tiny_card):
    a = TorchEncoder(make_network(seed=0), tiny_card, device="cpu")
    b = TorchEncoder(make_network(seed=0), tiny_card, device="cpu")
    c = TorchEncoder(make_network(seed=1), tiny_card, device="cpu")
    assert a.checksum == b.checksum == weights_checksum(b.network)
    assert len(a.checksum) == 64 and int(a.checksum, 16) >= 0
    assert c.checksum != a.checksum
    assert TorchEncoder(make_network(), tiny_card, device="cpu", checksum="given").checksum == "given"


def test_thread_settings_are_left_alone(make_network, tiny_card, crops):
    before = torch.get_num_threads()
    TorchEncoder(make_network(), tiny_card, device="cpu").embed_images(crops[:2], "uav")
    assert torch.get_num_threads() == before


def test_batch_size_follows_the_input_size_unless_fixed(make_network):
    encoder = TorchEncoder(make_network(), default_gleam_c_card(), device="cpu", checksum="unused")
    assert encoder.batch_size is None
    assert encoder.images_per_pass(384, 384) == default_batch_size("cpu", 384) == 16
    assert encoder.images_per_pass(384, 768) < encoder.images_per_pass(384, 384)
    encoder.batch_size = 5
    assert encoder.images_per_pass(384, 768) == 5
