"""A few training steps on a sample raster; the checkpoint is then used by gleam_geo.localize."""

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from gleam_geo import localize
from gleam_geo.models import load_checkpoint
from gleam_geo.models.torch_encoder import sha256_file
from training.gleam_c import convert_sample4geo
from training.gleam_c import evaluate as evaluate_cli
from training.gleam_c.params import TrainConfig
from training.gleam_c.train import train

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.fixture(scope="module")
def raster(shared_data):
    return str(shared_data / "usgs" / "colorado_15cm.tif")


@pytest.fixture(scope="module")
def config(raster, tmp_path_factory):
    source = {
        "type": "synthetic",
        "rasters": raster,
        "gsd_m": 0.6,
        "chip_size_px": 16,
        "min_valid_fraction": 0.5,
    }
    return TrainConfig(
        name="tiny-synthetic",
        architecture="test_resnet",
        img_size=32,
        sources=[source],
        eval_source=source,
        batch_size=4,
        epochs=2,
        lr=1e-3,
        warmup_steps=1,
        precision="fp32",
        sampling="similarity",
        neighbour_pool=4,
        neighbour_pick=2,
        num_workers=0,
        device="cpu",
        output_dir=str(tmp_path_factory.mktemp("run")),
        resume="auto",
    )


@pytest.fixture(scope="module")
def trained(config):
    return train(config)


def _log(config):
    with open(f"{config.output_dir}/log.csv") as handle:
        return list(csv.DictReader(handle))


def test_training_logs_steps_metrics_and_checkpoints(config, trained):
    rows = _log(config)
    assert len(rows) >= 4 and {row["epoch"] for row in rows} == {"0", "1"}
    assert all(np.isfinite(float(row["loss"])) for row in rows)
    metrics = [json.loads(line) for line in Path(config.output_dir, "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1] and 0 <= metrics[-1]["R@1"] <= 100
    card = json.loads(trained.with_suffix(".json").read_text())
    assert (card["name"], card["architecture"], card["extra"]["img_size"]) == (
        "tiny-synthetic",
        "test_resnet",
        32,
    )


def test_training_changes_the_weights(config, trained):
    torch.manual_seed(config.seed)
    from gleam_geo.models import GleamCNet

    initial = GleamCNet("test_resnet", 32).state_dict()
    final = safetensors.torch.load_file(trained)
    assert any(not torch.equal(initial[k], final[k]) for k in initial if initial[k].is_floating_point())


def test_resume_continues_from_the_saved_epoch(config, trained):
    before = len(_log(config))
    train(dataclasses.replace(config, epochs=3))
    rows = _log(config)
    assert len(rows) > before
    assert {row["epoch"] for row in rows[before:]} == {"2"}  # epochs 0 and 1 were not repeated
    assert int(rows[before]["step"]) == int(rows[before - 1]["step"]) + 1


def test_checkpoint_loads_unchanged_and_is_used_by_localize(config, trained, raster, tmp_path):
    encoder = load_checkpoint(trained, device="cpu")
    assert encoder.model_id == "tiny-synthetic" and encoder.embed_dim > 0
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    image[:, :20] = 200
    results = localize(image, raster, encoder=str(trained), modality="uav", top_k=3, cache_dir=tmp_path)
    assert len(results) == 3
    assert set(results["model"]) == {"tiny-synthetic"}
    manifest = json.loads(next(tmp_path.rglob("manifest.json")).read_text())
    assert sha256_file(trained) in json.dumps(manifest)  # the index was built with these weights


def test_evaluate_cli_writes_json_and_markdown(trained, raster, tmp_path):
    source = tmp_path / "source.yaml"
    source.write_text(
        f"type: synthetic\nrasters: {raster}\ngsd_m: 0.6\nchip_size_px: 16\nmin_valid_fraction: 0.5\n"
    )
    metrics = evaluate_cli.main(
        [
            "--checkpoint",
            str(trained),
            "--source",
            str(source),
            "--out",
            str(tmp_path / "m"),
            "--device",
            "cpu",
        ]
    )
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert saved["R@1"] == metrics["R@1"] and {"R@5", "R@10", "R@1%", "AP"} <= set(saved)
    assert "R@1" in (tmp_path / "m" / "metrics.md").read_text()


def test_sample4geo_converter_cli(tmp_path):
    from gleam_geo.models import GleamCNet

    torch.manual_seed(0)
    network = GleamCNet("test_resnet", 32)
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, tmp_path / "s4g.pth")
    weights = convert_sample4geo.main(
        [
            str(tmp_path / "s4g.pth"),
            "--architecture",
            "test_resnet",
            "--img-size",
            "32",
            "--out",
            str(tmp_path / "conv"),
        ]
    )
    loaded = load_checkpoint(weights, device="cpu")
    torch.testing.assert_close(loaded.network.logit_scale.detach(), network.logit_scale.detach())
