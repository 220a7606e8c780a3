from __future__ import annotations

import numpy as np
import pytest
import torch

import gleam_geo
from gleam_geo.errors import CheckpointError, RandomWeightsError, UnknownEncoderError
from gleam_geo.models import (
    DEFAULT_ENCODER,
    GleamCNet,
    TorchEncoder,
    clear_encoder_cache,
    get_encoder,
    list_encoders,
    register_encoder,
    registry,
    save_checkpoint,
)


@pytest.fixture
def fresh_cache():
    clear_encoder_cache()
    yield
    clear_encoder_cache()


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_encoder):
    return save_checkpoint(tiny_encoder.network, tiny_encoder.card, tmp_path / "tiny")


def test_default_encoder_is_geoembed_v3():
    assert DEFAULT_ENCODER == "geoembed-v3"
    encoder = get_encoder(device="cpu")
    assert encoder.model_id == "geoembed-v3" and encoder.embed_dim == 256
    assert get_encoder(None, device="cpu") is encoder  # cached per name and device


def test_builtin_names_are_listed():
    names = list_encoders()
    assert {"geoembed-v3", "gleam-c"} <= set(names) and names == sorted(names)


def test_lazy_top_level_names_resolve():
    assert gleam_geo.get_encoder is get_encoder
    assert gleam_geo.list_encoders() == list_encoders()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownEncoderError) as info:
        get_encoder("geoembed-v9", device="cpu")
    message = str(info.value)
    assert message.startswith("unknown encoder 'geoembed-v9'")
    assert "geoembed-v3" in message and "gleam-c" in message and "timm:" in message
    assert isinstance(info.value, KeyError)


def test_unknown_timm_architecture_is_an_unknown_encoder():
    with pytest.raises(UnknownEncoderError, match="not a timm architecture"):
        get_encoder("timm:resnet_nonexistent", allow_random=True, device="cpu")


@pytest.mark.parametrize("name", ["gleam-c", "timm:resnet10t"])
def test_untrained_networks_need_allow_random(name):
    with pytest.raises(
        RandomWeightsError, match=r"has no trained weights; pass a checkpoint= or allow_random=True"
    ):
        get_encoder(name, device="cpu")


def test_random_weights_are_seeded_and_leave_the_global_rng_alone(fresh_cache, crops):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = get_encoder("timm:resnet10t", allow_random=True, img_size=64, device="cpu")
    assert torch.equal(torch.rand(3), expected_next)
    clear_encoder_cache()
    second = get_encoder("timm:resnet10t", allow_random=True, img_size=64, device="cpu")
    assert first is not second
    assert first.checksum == second.checksum
    assert first.model_id == "gleam-c-resnet10t-64-random"
    np.testing.assert_array_equal(first.embed_images(crops, "uav"), second.embed_images(crops, "uav"))


def test_encoders_are_cached_per_arguments(fresh_cache):
    a = get_encoder("timm:resnet10t", allow_random=True, img_size=64, device="cpu")
    assert get_encoder("timm:resnet10t", allow_random=True, img_size=64, device="cpu") is a
    b = get_encoder("timm:resnet10t", allow_random=True, img_size=32, device="cpu")
    assert b is not a and b.card.input_size("uav") == (32, 32)


def test_checkpoint_paths_load_and_reload_when_rewritten(
    fresh_cache, tiny_checkpoint, make_network, tiny_card
):
    by_path = get_encoder(str(tiny_checkpoint), device="cpu")
    assert by_path.checksum == TorchEncoder(make_network(), tiny_card, device="cpu").checksum
    assert get_encoder(tiny_checkpoint.with_suffix(""), device="cpu").checksum == by_path.checksum
    assert get_encoder(str(tiny_checkpoint), device="cpu") is by_path

    save_checkpoint(make_network(seed=1), tiny_card, tiny_checkpoint)
    rewritten = get_encoder(str(tiny_checkpoint), device="cpu")
    assert rewritten.checksum != by_path.checksum


def test_timm_name_with_a_checkpoint(fresh_cache, tiny_checkpoint):
    encoder = get_encoder("timm:resnet10t", checkpoint=tiny_checkpoint, device="cpu")
    assert encoder.model_id == "gleam-c-resnet10t-64"


def test_pth_paths_need_an_architecture(fresh_cache, tmp_path, make_network):
    torch.save(make_network().state_dict(), tmp_path / "s4g.pth")
    with pytest.raises(CheckpointError, match="pass architecture="):
        get_encoder(tmp_path / "s4g.pth", device="cpu")
    encoder = get_encoder(tmp_path / "s4g.pth", architecture="resnet10t", img_size=64, device="cpu")
    assert encoder.model_id == "sample4geo-s4g" and encoder.card.input_size("uav") == (64, 64)


def test_missing_checkpoint_path_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        get_encoder(tmp_path / "absent.safetensors", device="cpu")


def test_registered_factories_get_device_and_options(monkeypatch, fresh_cache, make_network, tiny_card):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    calls = []

    @register_encoder("tiny-test")
    def factory(*, device, allow_random, seed=0):
        calls.append((device, allow_random, seed))
        return TorchEncoder(make_network(seed=seed), tiny_card, device=device)

    encoder = get_encoder("tiny-test", device="cpu", seed=2)
    assert calls == [("cpu", False, 2)] and encoder.device == "cpu"
    assert "tiny-test" in list_encoders()
    with pytest.raises(ValueError, match="already taken"):
        register_encoder("tiny-test")
    with pytest.raises(ValueError, match="already taken"):
        register_encoder("timm:anything")


def test_gleam_c_is_convnext_base_at_384(fresh_cache):
    encoder = get_encoder("gleam-c", allow_random=True, device="cpu")
    assert isinstance(encoder.network, GleamCNet)
    assert encoder.network.architecture == "convnext_base"
    assert encoder.embed_dim == encoder.network.num_features == 1024
    assert encoder.card.input_size("satellite") == (384, 384)
    assert encoder.card.input_size("panorama") == (384, 768)
    assert sum(p.numel() for p in encoder.network.parameters()) == pytest.approx(87.6e6, rel=0.01)
