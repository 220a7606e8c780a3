from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import safetensors.torch
import torch

from gleam_geo.errors import CheckpointError
from gleam_geo.models import (
    ModelCard,
    TorchEncoder,
    default_gleam_c_card,
    import_sample4geo,
    load_checkpoint,
    save_checkpoint,
)
from gleam_geo.models.checkpoint import checkpoint_paths


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_gives_identical_embeddings(tmp_path, tiny_encoder, crops):
    weights = save_checkpoint(tiny_encoder.network, tiny_encoder.card, tmp_path / "ckpt" / "tiny")
    assert weights == tmp_path / "ckpt" / "tiny.safetensors"
    assert (tmp_path / "ckpt" / "tiny.json").is_file()
    assert sorted(p.name for p in weights.parent.iterdir()) == [
        "tiny.json",
        "tiny.safetensors",
    ]  # no temp files

    loaded = load_checkpoint(weights, device="cpu")
    assert loaded.card == tiny_encoder.card
    np.testing.assert_array_equal(loaded.embed_images(crops, "uav"), tiny_encoder.embed_images(crops, "uav"))
    assert loaded.checksum == sha256(weights) == tiny_encoder.checksum


@pytest.mark.parametrize("given", ["tiny.safetensors", "tiny.json", "tiny"])
def test_checkpoint_accepts_weights_card_or_stem(tmp_path, tiny_encoder, given):
    save_checkpoint(tiny_encoder.network, tiny_encoder.card, tmp_path / "tiny.safetensors")
    assert load_checkpoint(tmp_path / given, device="cpu").checksum == tiny_encoder.checksum


def test_dotted_stems_keep_their_dots(tmp_path):
    assert checkpoint_paths(tmp_path / "model.v2") == (
        tmp_path / "model.v2.safetensors",
        tmp_path / "model.v2.json",
    )


def test_weights_for_another_architecture_are_named_in_one_line(tmp_path, make_network):
    network = make_network(arch="convnext_atto")
    card = default_gleam_c_card("convnext_femto", 64)
    save_checkpoint(network, card, tmp_path / "wrong")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "wrong.safetensors", device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert "model.stem.0.weight is (40, 3, 4, 4) in the checkpoint but (48, 3, 4, 4)" in message
    assert "trained for convnext_atto, the card says convnext_femto" in message


def test_missing_and_extra_keys_are_refused(tmp_path, tiny_encoder):
    save_checkpoint(tiny_encoder.network, tiny_encoder.card, tmp_path / "tiny")
    state = {k: v.contiguous() for k, v in tiny_encoder.network.state_dict().items()}
    del state["logit_scale"]
    safetensors.torch.save_file(state, tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError, match="logit_scale is missing from the checkpoint"):
        load_checkpoint(tmp_path / "tiny", device="cpu")
    state["logit_scale"] = torch.tensor(1.0)
    state["head.extra"] = torch.zeros(3)
    safetensors.torch.save_file(state, tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError, match=r"head\.extra is in the checkpoint but not in the network"):
        load_checkpoint(tmp_path / "tiny", device="cpu")


def test_missing_card_is_a_checkpoint_error(tmp_path, tiny_encoder):
    weights = save_checkpoint(tiny_encoder.network, tiny_encoder.card, tmp_path / "tiny")
    (tmp_path / "tiny.json").unlink()
    with pytest.raises(CheckpointError, match=r"needs its \.json card"):
        load_checkpoint(weights, device="cpu")


def test_missing_or_corrupt_weights_are_checkpoint_errors(tmp_path, tiny_card):
    tiny_card.save(tmp_path / "tiny.json")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "tiny.json", device="cpu")
    (tmp_path / "tiny.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(tmp_path / "tiny.json", device="cpu")


def test_card_naming_an_unknown_architecture_is_reported(tmp_path, tiny_encoder):
    card = ModelCard.from_dict({**tiny_encoder.card.__dict__, "architecture": "no_such_net"})
    save_checkpoint(tiny_encoder.network, card, tmp_path / "odd")
    with pytest.raises(CheckpointError, match="'no_such_net', which is neither a timm model"):
        load_checkpoint(tmp_path / "odd", device="cpu")


def test_load_checkpoint_refuses_pickles(tmp_path):
    with pytest.raises(CheckpointError, match="import_sample4geo"):
        load_checkpoint(tmp_path / "model.pth")


def test_sample4geo_state_dict_imports_and_matches(tmp_path, make_network, tiny_card, crops):
    original = make_network(seed=3)
    reference = TorchEncoder(make_network(seed=3), tiny_card, device="cpu")
    torch.save({f"module.{k}": v for k, v in original.state_dict().items()}, tmp_path / "s4g.pth")

    imported = import_sample4geo(tmp_path / "s4g.pth", "resnet10t", img_size=64, device="cpu")
    assert imported.model_id == "sample4geo-s4g"
    assert "s4g.pth" in imported.card.training_data
    np.testing.assert_allclose(
        imported.embed_images(crops, "uav"), reference.embed_images(crops, "uav"), atol=1e-6
    )

    converted = import_sample4geo(tmp_path / "s4g.pth", "resnet10t", img_size=64, out=tmp_path / "s4g")
    reloaded = load_checkpoint(tmp_path / "s4g.safetensors", device="cpu")
    assert (
        imported.checksum == converted.checksum == reloaded.checksum == sha256(tmp_path / "s4g.safetensors")
    )


class _Payload:
    """Unpickling this would create a directory: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pth_with_pickled_objects_is_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model.weight": torch.zeros(1), "payload": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="never unpickled"):
        import_sample4geo(tmp_path / "evil.pth", "resnet10t", img_size=64)
    assert not marker.exists()


def test_pth_that_is_not_a_state_dict_is_refused(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        import_sample4geo(tmp_path / "list.pth", "resnet10t", img_size=64)
    with pytest.raises(CheckpointError, match="not found"):
        import_sample4geo(tmp_path / "absent.pth", "resnet10t")


def test_pth_for_another_architecture_is_refused(tmp_path, make_network):
    torch.save(make_network().state_dict(), tmp_path / "r10.pth")
    with pytest.raises(CheckpointError, match="does not fit architecture 'resnet18'"):
        import_sample4geo(tmp_path / "r10.pth", "resnet18", img_size=64)
