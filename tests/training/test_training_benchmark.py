"""The throughput benchmark runs both modes (on CPU here) and records one JSON line per run."""

import json

import pytest
import torch

from gleam_geo.models import GleamCNet
from training.gleam_c import benchmark_throughput
from training.gleam_c.train import PairModel

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def test_data_parallel_pair_model_matches_pair_model_with_a_scalar_scale():
    torch.manual_seed(0)
    network = GleamCNet("test_resnet", 32).eval()
    queries, references = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    expected = PairModel(network)(queries, references)
    got = benchmark_throughput.DataParallelPairModel(network)(queries, references)
    assert got[2].ndim == 0 and got[2] is network.logit_scale
    for a, b in zip(got[:2], expected[:2], strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", ["ddp", "dp"])
def test_benchmark_cli_records_pairs_per_second(mode, tmp_path):
    out = tmp_path / "bench.jsonl"
    rate = benchmark_throughput.main(
        [
            "--mode", mode, "--architecture", "test_resnet", "--img-size", "32",
            "--batch-size", "2", "--steps", "1", "--warmup", "1", "--out", str(out),
        ]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert rate > 0 and result["pairs_per_s"] == rate
    assert (result["mode"], result["architecture"], result["pairs_per_gpu"]) == (mode, "test_resnet", 2)
