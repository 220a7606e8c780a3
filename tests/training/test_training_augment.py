"""Paired augmentation of image-file sources, and that every shipped config names valid adapter arguments."""

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gleam_geo.models import default_gleam_c_card
from training.gleam_c.datasets import PairAugment, PairDataset, PairRecord, augment_pair
from training.gleam_c.datasets.specs import _PAIRS, _RETRIEVAL, _arguments, build_pairs
from training.gleam_c.params import load_config

CONFIGS = Path("training/gleam_c/configs")
REFERENCE = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
PANORAMA = np.arange(4 * 16 * 3, dtype=np.uint8).reshape(4, 16, 3)


@pytest.mark.parametrize("seed", range(6))
def test_rotation_turns_the_reference_and_rolls_a_panorama_with_it(seed):
    rotate_only = PairAugment(flip=0.0, rotate=1.0, photometric=0.0)
    query, reference = augment_pair(PANORAMA, REFERENCE, "panorama", rotate_only, np.random.default_rng(seed))
    turns = [k for k in range(1, 4) if np.array_equal(np.rot90(REFERENCE, k), reference)]
    assert len(turns) == 1
    assert np.array_equal(query, np.roll(PANORAMA, -4 * turns[0], axis=1))  # a quarter width per turn
    uav, _ = augment_pair(REFERENCE, REFERENCE, "uav", rotate_only, np.random.default_rng(seed))
    assert np.array_equal(uav, REFERENCE)  # a query of unknown heading is not turned


def test_flip_mirrors_both_and_photometric_changes_each_image_apart():
    query, reference = augment_pair(
        PANORAMA, REFERENCE, "panorama", PairAugment(1.0, 0.0, 0.0), np.random.default_rng(0)
    )
    assert np.array_equal(query, PANORAMA[:, ::-1]) and np.array_equal(reference, REFERENCE[:, ::-1])
    grey = np.full((8, 8, 3), 128, dtype=np.uint8)
    query, reference = augment_pair(grey, grey, "uav", PairAugment(0.0, 0.0, 0.5), np.random.default_rng(0))
    assert query.dtype == np.uint8 and not np.array_equal(query, reference)


def test_pair_dataset_augments_per_epoch_and_pair_reproducibly(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
        tmp_path / "a.png"
    )
    records = [PairRecord(str(tmp_path / "a.png"), str(tmp_path / "a.png"), "uav", "a")]
    card = default_gleam_c_card("resnet18", 16)
    plain = PairDataset(records, card)[0]
    torch.testing.assert_close(plain[0], plain[1])
    dataset = PairDataset(records, card, augment=PairAugment(flip=0.5, rotate=1.0), seed=3)
    first = dataset[0]
    assert not torch.equal(first[1], plain[1])
    torch.testing.assert_close(dataset[0][1], first[1])  # same seed, epoch and pair: same images
    views = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        views.add(dataset[0][1].numpy().tobytes())
    assert len(views) > 1


def test_file_sources_are_augmented_unless_switched_off(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    pd.DataFrame({"query_path": ["a.png"], "reference_path": ["a.png"], "view": ["uav"]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    card = default_gleam_c_card("resnet18", 16)
    source = {"type": "manifest", "path": str(tmp_path / "m.csv")}
    assert build_pairs(source, card).augment == PairAugment()
    assert build_pairs({**source, "augment": False}, card).augment is None
    custom = build_pairs({**source, "augment": {"photometric": 0.0}, "seed": 7}, card)
    assert (custom.augment.photometric, custom.seed) == (0.0, 7)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_name_valid_adapter_arguments(path):
    config = load_config(path)
    specs = [(spec, _PAIRS) for spec in config.sources]
    if config.eval_source:
        specs.append((config.eval_source, _RETRIEVAL))
    for spec, adapters in specs:
        kind, arguments = _arguments(spec)
        if kind == "synthetic":
            continue
        if adapters is _PAIRS:
            arguments.pop("seed", None)  # the augmentation's, taken by build_pairs
        inspect.signature(adapters[kind]).bind(**arguments)  # TypeError on a stray key
