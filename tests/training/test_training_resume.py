"""A run interrupted inside an epoch resumes to the same losses and weights as an uninterrupted one."""

import csv
import dataclasses

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch
from PIL import Image

from gleam_geo.models import default_gleam_c_card
from training.gleam_c import train as train_module
from training.gleam_c.datasets.specs import build_pairs
from training.gleam_c.params import TrainConfig
from training.gleam_c.train import epoch_plan, train

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

PAIRS = 16


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(PAIRS):
        reference = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        query = np.clip(reference + rng.integers(-20, 20, reference.shape), 0, 255).astype(np.uint8)
        Image.fromarray(reference).save(root / f"r{i}.png")
        Image.fromarray(query).save(root / f"q{i}.png")
        rows.append({"query_path": f"q{i}.png", "reference_path": f"r{i}.png", "view": "uav"})
    pd.DataFrame(rows).to_csv(root / "pairs.csv", index=False)
    return str(root / "pairs.csv")


def _config(manifest, out, **changes):
    config = TrainConfig(
        name="resume-test",
        architecture="test_resnet",
        img_size=32,
        sources=[{"type": "manifest", "path": manifest}],
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
        output_dir=str(out),
        resume="auto",
    )
    return dataclasses.replace(config, **changes)


def _losses(out):
    with open(out / "log.csv") as handle:
        return [(int(row["step"]), float(row["loss"])) for row in csv.DictReader(handle)]


class _Crash(Exception):
    pass


def test_mid_epoch_resume_matches_an_uninterrupted_run(manifest, tmp_path, monkeypatch):
    straight = train(_config(manifest, tmp_path / "straight"))

    log = train_module._Logger.log

    def crash_at_step_6(self, row):
        if row["step"] == 6:  # epoch 1 (similarity plan), after the state of step 5 was saved
            raise _Crash
        log(self, row)

    interrupted = _config(manifest, tmp_path / "interrupted", save_every_steps=1)
    with monkeypatch.context() as patch:
        patch.setattr(train_module._Logger, "log", crash_at_step_6)
        with pytest.raises(_Crash):
            train(interrupted)
    state = torch.load(tmp_path / "interrupted" / "state.pt", weights_only=True)
    assert (state["epoch"], state["step"], state["batches_done"]) == (1, 5, 1)
    resumed = train(interrupted)

    expected, got = _losses(tmp_path / "straight"), _losses(tmp_path / "interrupted")
    assert [s for s, _ in got] == [s for s, _ in expected] == list(range(1, 9))
    np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-5)
    final, reference = safetensors.torch.load_file(resumed), safetensors.torch.load_file(straight)
    for name, tensor in reference.items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-4, atol=1e-6)


def test_epoch_plan_is_cut_to_whole_accumulation_steps(manifest):
    card = default_gleam_c_card("test_resnet", 32)
    source = build_pairs({"type": "manifest", "path": manifest}, card)
    config = _config(manifest, "unused", accum_steps=3, sampling="random")
    plan = epoch_plan([source], [1.0], config, epoch=0, global_batch=4)
    assert len(plan) == 3  # 4 batches of 4 pairs, the 4th would only half-fill a step
    assert len({i for batch in plan for i in batch}) == 12
