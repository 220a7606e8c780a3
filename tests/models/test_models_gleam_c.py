from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gleam_geo.errors import UnknownEncoderError
from gleam_geo.models import GleamCNet, default_gleam_c_card
from gleam_geo.models.card import IMAGENET_MEAN, IMAGENET_STD


def test_state_dict_has_the_sample4geo_layout(make_network):
    network = make_network()
    keys = list(network.state_dict())
    assert "logit_scale" in keys
    assert all(k.startswith("model.") for k in keys if k != "logit_scale")
    assert network.logit_scale.shape == ()
    assert math.isclose(network.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)


def test_forward_gives_pooled_backbone_features(make_network):
    network = make_network().eval()
    with torch.no_grad():
        features = network(torch.zeros(2, 3, 64, 96))
    assert features.shape == (2, network.num_features) == (2, 512)


def test_default_card_describes_convnext_base_at_384():
    card = default_gleam_c_card()
    assert card.architecture == "convnext_base"
    assert card.embed_dim == 1024
    assert card.image_size["panorama"] == (384, 768)
    for view in ("satellite", "uav", "street_map", "ground"):
        assert card.input_size(view) == (384, 384)
    assert card.mean == IMAGENET_MEAN and card.std == IMAGENET_STD
    assert card.gsd_m == 0.5 and card.chip_size_px == 384
    assert card.extra == {"img_size": 384}


def test_card_follows_architecture_and_size():
    card = default_gleam_c_card("convnext_atto", 128, name="mine")
    assert (card.name, card.embed_dim, card.input_size("panorama")) == ("mine", 320, (128, 256))


def test_paper_backbone_tag_builds_without_download():
    # pretrained tags only select metadata; nothing may be fetched at run time
    card = default_gleam_c_card("convnext_base.fb_in22k_ft_in1k_384")
    assert card.embed_dim == 1024


def test_unknown_architecture_is_refused():
    with pytest.raises(UnknownEncoderError, match="not a timm architecture"):
        GleamCNet("convnext_gigantic")
    with pytest.raises(UnknownEncoderError):
        GleamCNet("convnext_base.no_such_tag")


def test_token_grid_backbones_take_img_size_and_panoramas():
    network = GleamCNet("vit_tiny_patch16_224", img_size=32).eval()
    assert network.model.patch_embed.img_size == (32, 32)
    with torch.no_grad():
        assert network(torch.zeros(1, 3, 32, 64)).shape == (1, 192)


def test_gradient_checkpointing_gives_the_same_gradients(make_network):
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def gradients(checkpointing: bool) -> list[torch.Tensor]:
        network = make_network(arch="convnext_atto").train()
        network.set_grad_checkpointing(checkpointing)
        assert all(stage.grad_checkpointing is checkpointing for stage in network.model.stages)
        network(images).pow(2).sum().backward()
        return [p.grad.clone() for p in network.parameters() if p.grad is not None]

    plain, checkpointed = gradients(False), gradients(True)
    assert len(plain) == len(checkpointed) > 10
    for a, b in zip(plain, checkpointed, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
