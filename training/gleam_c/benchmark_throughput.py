"""Training throughput: gathered-feature DDP against a DataParallel-style single process.

Both run the GLEAM-C training step (shared encoder on query and reference, symmetric
InfoNCE, AdamW) on random tensors, so only the parallelism differs::

    torchrun --nproc_per_node 8 -m training.gleam_c.benchmark_throughput --mode ddp
    python -m training.gleam_c.benchmark_throughput --mode dp

``--batch-size`` is pairs per GPU; DataParallel gets ``batch_size * GPUs`` pairs per step,
the same global batch. The result (pairs per second) is logged and appended as one JSON
line to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gleam_geo.models import GleamCNet, InfoNCELoss

from .distributed import cleanup_distributed, init_distributed
from .train import PairModel

__all__ = ["DataParallelPairModel", "main", "measure"]

logger = logging.getLogger(__name__)


class DataParallelPairModel(nn.Module):
    """:class:`PairModel` run through ``nn.DataParallel``, with the logit scale left unreplicated.

    ``nn.DataParallel`` would gather the 0-d logit scale of each replica into a vector (one
    per GPU), so only the shared network is wrapped and the scale is returned as is.
    """

    def __init__(self, network: GleamCNet) -> None:
        """Replicate ``network`` over the visible GPUs (runs it directly without any)."""
        super().__init__()
        self.network = network
        self.parallel = nn.DataParallel(network)

    def forward(
        self, queries: torch.Tensor, references: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return query features, reference features and the logit scale."""
        query_features, reference_features = self.parallel(torch.cat([queries, references])).split(
            len(queries)
        )
        return query_features, reference_features, self.network.logit_scale


def measure(
    model: nn.Module,
    loss_fn: InfoNCELoss,
    optimizer: torch.optim.Optimizer,
    pairs: int,
    img_size: int,
    device: str,
    *,
    steps: int,
    warmup: int,
    bf16: bool,
) -> float:
    """Run ``warmup + steps`` training steps on random images; return pairs per second of the timed steps."""
    queries = torch.randn(pairs, 3, img_size, img_size, device=device)
    references = torch.randn(pairs, 3, img_size, img_size, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    started = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
        with autocast:
            query_features, reference_features, logit_scale = model(queries, references)
        loss = loss_fn(query_features, reference_features, logit_scale)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return pairs * steps / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> float:
    """Command line: measure one mode; return the global pairs per second."""
    parser = argparse.ArgumentParser(
        prog="python -m training.gleam_c.benchmark_throughput", description=__doc__
    )
    parser.add_argument("--mode", choices=("ddp", "dp"), required=True)
    parser.add_argument("--architecture", default="convnext_base")
    parser.add_argument("--img-size", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per GPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--out", default="benchmark_throughput.jsonl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    env = init_distributed("auto")
    try:
        network = GleamCNet(args.architecture, args.img_size)
        network.set_grad_checkpointing(args.grad_checkpointing)
        network.to(env.device, memory_format=torch.channels_last)
        gpus = max(1, torch.cuda.device_count())
        if args.mode == "ddp":
            model: nn.Module = PairModel(network)
            if env.distributed:
                model = DistributedDataParallel(
                    model, device_ids=[env.local_rank] if env.device != "cpu" else None
                )
            loss_fn = InfoNCELoss(0.1, rank=env.rank, world_size=env.world_size)
            pairs, processes = args.batch_size, env.world_size
        else:
            model = DataParallelPairModel(network)
            loss_fn = InfoNCELoss(0.1)
            pairs, processes = args.batch_size * gpus, 1
        optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
        bf16 = env.device.startswith("cuda")
        rate = processes * measure(
            model,
            loss_fn,
            optimizer,
            pairs,
            args.img_size,
            env.device,
            steps=args.steps,
            warmup=args.warmup,
            bf16=bf16,
        )
        if env.is_master:
            result = {
                "mode": args.mode,
                "architecture": args.architecture,
                "img_size": args.img_size,
                "pairs_per_gpu": args.batch_size,
                "gpus": env.world_size if args.mode == "ddp" else gpus,
                "bf16": bf16,
                "grad_checkpointing": args.grad_checkpointing,
                "pairs_per_s": rate,
                "device": torch.cuda.get_device_name() if bf16 else "cpu",
            }
            with Path(args.out).open("a") as handle:
                handle.write(json.dumps(result) + "\n")
            logger.info("%s", result)
        if env.distributed:
            dist.barrier()  # no rank leaves gloo while the master still writes
        return rate
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    main()
