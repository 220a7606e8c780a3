from itertools import pairwise

import pytest
import torch

from training.gleam_c.params import load_config, parse_overrides
from training.gleam_c.scheduler import cosine_with_warmup

CONFIGS = "training/gleam_c/configs"


def test_phase_configs_load_with_includes_and_overrides():
    phase1 = load_config(f"{CONFIGS}/phase1_vigor.yaml")
    assert [s["type"] for s in phase1.sources] == ["vigor"]
    assert (phase1.architecture, phase1.img_size, phase1.label_smoothing) == ("convnext_base", 384, 0.1)
    phase2 = load_config(f"{CONFIGS}/phase2_joint.yaml", parse_overrides(["lr=3e-4", "max_steps=null"]))
    assert len({s["type"] for s in phase2.sources}) >= 4
    assert all("ratio" in s and "root" in s for s in phase2.sources)
    assert phase2.lr == 3e-4 and phase2.max_steps is None
    assert phase2.init_checkpoint


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sources: [{type: cvusa, root: x}]\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(path)
    path.write_text("sources: [{type: cvusa, root: x}]\nsampling: nearest\n")
    with pytest.raises(ValueError, match="sampling"):
        load_config(path)
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


def test_cosine_schedule_warms_up_then_decays():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = cosine_with_warmup(optimizer, warmup_steps=4, total_steps=14)
    rates = []
    for _ in range(14):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == pytest.approx(1.0) and rates[9] == pytest.approx(0.5)
    assert all(a >= b for a, b in pairwise(rates[4:]))
