"""The GLEAM-C training loop: ``python -m training.gleam_c.train --config CONFIG.yaml``.

Launch with ``torchrun --nproc_per_node N`` for distributed data parallel training; each
process embeds its slice of every global batch and the loss gathers all features, so the
contrastive batch spans every process. Checkpoints are gleam_geo checkpoints
(safetensors plus model card) that :func:`gleam_geo.models.get_encoder` loads unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Subset

from gleam_geo.models import (
    GleamCNet,
    InfoNCELoss,
    ModelCard,
    TorchEncoder,
    default_gleam_c_card,
    load_checkpoint,
    save_checkpoint,
)

from .datasets.base import PairDataset, ReferenceImages
from .datasets.specs import build_pairs, build_retrieval
from .distributed import DistributedEnv, cleanup_distributed, init_distributed
from .evaluate import evaluate
from .params import TrainConfig, load_config, parse_overrides
from .sampling import (
    DistributedBatchSampler,
    embedding_neighbours,
    gps_neighbours,
    hard_negative_batches,
    interleave_batches,
    random_batches,
)
from .scheduler import cosine_with_warmup

__all__ = ["PairModel", "build_network", "embed_references", "epoch_plan", "main", "train"]

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
FINAL_CHECKPOINT = "final"


class PairModel(nn.Module):
    """Runs the shared network on queries and references in one forward pass (one DDP forward per step)."""

    def __init__(self, network: GleamCNet) -> None:
        """Wrap ``network``."""
        super().__init__()
        self.network = network

    def forward(
        self, queries: torch.Tensor, references: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return query features, reference features and the logit scale."""
        if queries.shape[1:] == references.shape[1:]:
            features = self.network(torch.cat([queries, references]))
            query_features, reference_features = features.split(len(queries))
        else:
            query_features, reference_features = self.network(queries), self.network(references)
        return query_features, reference_features, self.network.logit_scale


def build_network(config: TrainConfig) -> GleamCNet:
    """A new network, or the one in ``config.init_checkpoint``."""
    if config.init_checkpoint:
        network = load_checkpoint(config.init_checkpoint, device="cpu").network
        if not isinstance(network, GleamCNet):
            raise ValueError(f"{config.init_checkpoint} is not a GLEAM-C checkpoint")
        return network.train()
    return GleamCNet(config.architecture, config.img_size)


def _autocast(device: str, precision: str) -> contextlib.AbstractContextManager[object]:
    if device.startswith("cuda") and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def embed_references(
    network: nn.Module, dataset: PairDataset, env: DistributedEnv, config: TrainConfig
) -> torch.Tensor:
    """Unit embeddings of every pair's reference; each process embeds a share, then all are gathered."""
    was_training = network.training
    network.eval()
    shard = Subset(ReferenceImages(dataset), range(env.rank, len(dataset), env.world_size))
    loader = DataLoader(shard, batch_size=config.batch_size * 2, num_workers=config.num_workers)
    parts = []
    for images in loader:
        with _autocast(env.device, config.precision):
            parts.append(F.normalize(network(images.to(env.device)).float(), dim=1))
    network.train(was_training)
    local = torch.cat(parts)
    if not env.distributed:
        return local.cpu()
    rows = -(-len(dataset) // env.world_size)
    padded = torch.zeros(rows, local.shape[1], device=local.device)
    padded[: len(local)] = local
    gathered = [torch.empty_like(padded) for _ in range(env.world_size)]
    dist.all_gather(gathered, padded)
    # Row i of process r is pair r + i * world_size.
    return torch.stack(gathered, dim=1).reshape(-1, local.shape[1])[: len(dataset)].cpu()


def epoch_plan(
    sources: Sequence[PairDataset],
    ratios: Sequence[float],
    config: TrainConfig,
    epoch: int,
    global_batch: int,
    embed: Any = None,
) -> list[list[int]]:
    """The epoch's global batches, with indices into the concatenation of ``sources``.

    Similarity sampling needs ``embed(source) -> (N, D)`` embeddings; it is used from the
    second epoch on (from the first when training starts from a checkpoint). Otherwise GPS
    sampling is used where every pair has coordinates, else random batches. The plan is cut
    to a multiple of ``accum_steps``, so no accumulated gradient spills into the next epoch.
    """
    rng = np.random.default_rng([config.seed, epoch])
    plans, offset = [], 0
    for source in sources:
        groups = source.groups()
        coordinates = source.coordinates()
        use_similarity = config.sampling == "similarity" and embed is not None
        if use_similarity and (epoch > 0 or config.init_checkpoint):
            neighbours = embedding_neighbours(embed(source), config.neighbour_pool)
            plan = hard_negative_batches(neighbours, groups, global_batch, config.neighbour_pick, rng)
        elif config.sampling != "random" and coordinates is not None:
            neighbours = gps_neighbours(coordinates, config.neighbour_pool)
            plan = hard_negative_batches(neighbours, groups, global_batch, config.neighbour_pick, rng)
        else:
            plan = random_batches(groups, global_batch, rng)
        plans.append([[index + offset for index in batch] for batch in plan])
        offset += len(source)
    mixed = interleave_batches(plans, ratios, rng)
    return mixed[: len(mixed) - len(mixed) % config.accum_steps]


class _Logger:
    """Step metrics to ``log.csv`` (and TensorBoard when asked for and installed); master only."""

    FIELDS = ("step", "epoch", "loss", "lr", "logit_scale", "pairs_per_s")

    def __init__(self, out_dir: Path, kind: str) -> None:
        path = out_dir / "log.csv"
        new = not path.exists()
        self.handle = path.open("a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=self.FIELDS)
        if new:
            self.writer.writeheader()
        self.board = None
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.warning("tensorboard is not installed; logging to %s only", path)
            else:
                self.board = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, row: dict[str, float]) -> None:
        self.writer.writerow(row)
        self.handle.flush()
        if self.board is not None:
            for key, value in row.items():
                if key != "step":
                    self.board.add_scalar(key, value, int(row["step"]))

    def close(self) -> None:
        self.handle.close()
        if self.board is not None:
            self.board.close()


def _card(config: TrainConfig, network: GleamCNet) -> ModelCard:
    return default_gleam_c_card(
        network.architecture,
        config.img_size,
        name=config.name,
        training_data=config.training_data or ", ".join(source["type"] for source in config.sources),
    )


def _resume_path(config: TrainConfig) -> Path | None:
    if config.resume == "auto":
        path = Path(config.output_dir) / STATE_FILE
        return path if path.is_file() else None
    return Path(config.resume) if config.resume else None


def train(config: TrainConfig) -> Path:
    """Run one training phase; return the path of the final checkpoint's weights."""
    env = init_distributed(config.device)
    out = Path(config.output_dir)
    try:
        torch.manual_seed(config.seed)
        network = build_network(config)
        if config.grad_checkpointing:
            network.set_grad_checkpointing(True)
        network.to(env.device, memory_format=torch.channels_last)  # as TorchEncoder runs it
        card = _card(config, network)
        sources = [build_pairs(spec, card) for spec in config.sources]
        ratios = [float(spec.get("ratio", 1.0)) for spec in config.sources]
        joint = ConcatDataset(sources)
        global_batch = config.batch_size * env.world_size
        model: nn.Module = PairModel(network)
        if env.distributed:
            model = DistributedDataParallel(
                model, device_ids=[env.local_rank] if env.device != "cpu" else None
            )
        loss_fn = InfoNCELoss(
            config.label_smoothing,
            rank=env.rank,
            world_size=env.world_size,
            local_loss=config.local_loss,
            gather_with_grad=config.gather_with_grad,
        )
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = max(1, sum(len(s) for s in sources) // global_batch // config.accum_steps)
        total_steps = config.epochs * steps_per_epoch
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        scheduler = cosine_with_warmup(optimizer, min(config.warmup_steps, total_steps // 2), total_steps)
        start_epoch, step, resumed_plan, skip = 0, 0, None, 0
        state_path = _resume_path(config)
        if state_path is not None:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            network.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step = int(state["step"])
            if "plan" in state:  # saved mid-epoch: finish that epoch's plan
                start_epoch, resumed_plan = int(state["epoch"]), state["plan"].tolist()
                skip = int(state["batches_done"])
            else:
                start_epoch = int(state["epoch"]) + 1
            logger.info("resumed from %s at epoch %d, step %d", state_path, start_epoch, step)
        if env.is_master:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        log = _Logger(out, config.log) if env.is_master else None
        eval_set = build_retrieval(config.eval_source, card) if config.eval_source and env.is_master else None

        def embed(source: PairDataset) -> torch.Tensor:
            return embed_references(network, source, env, config)

        for epoch in range(start_epoch, config.epochs):
            if config.max_steps is not None and step >= config.max_steps:
                break
            for source in sources:
                source.set_epoch(epoch)
            if resumed_plan is None:
                plan, skip = epoch_plan(sources, ratios, config, epoch, global_batch, embed), 0
            else:
                plan, resumed_plan = resumed_plan, None

            def save_position(step: int, done: int, epoch: int = epoch, plan: list[list[int]] = plan) -> None:
                _save_state(network, optimizer, scheduler, out, epoch, step, (plan, done))

            sampler = DistributedBatchSampler(plan[skip:], rank=env.rank, world_size=env.world_size)
            loader = DataLoader(joint, batch_sampler=sampler, num_workers=config.num_workers)
            step, done = _train_epoch(
                model,
                loader,
                loss_fn,
                optimizer,
                scheduler,
                config,
                env,
                epoch,
                step,
                log,
                save=save_position if env.is_master else None,
                skip=skip,
            )
            if env.is_master and done < len(plan):  # stopped by max_steps
                save_position(step, done)
            elif env.is_master:
                save_checkpoint(network, card, out / "checkpoints" / f"epoch{epoch:03d}")
                _save_state(network, optimizer, scheduler, out, epoch, step)
                if eval_set is not None:
                    metrics = evaluate(
                        TorchEncoder(network, card, device=env.device, checksum="training"), eval_set
                    )
                    network.train()
                    with (out / "metrics.jsonl").open("a") as handle:
                        handle.write(json.dumps({"epoch": epoch, "step": step, **metrics}) + "\n")
                    logger.info("epoch %d: %s", epoch, metrics)
            if env.distributed:
                dist.barrier()
        final = (
            save_checkpoint(network, card, out / FINAL_CHECKPOINT)
            if env.is_master
            else out / FINAL_CHECKPOINT
        )
        if env.distributed:
            dist.barrier()  # no rank leaves gloo while the master still writes (else SIGABRT at exit)
        if log is not None:
            log.close()
        return Path(final)
    finally:
        cleanup_distributed()


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: InfoNCELoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    env: DistributedEnv,
    epoch: int,
    step: int,
    log: _Logger | None,
    *,
    save: Callable[[int, int], None] | None = None,
    skip: int = 0,
) -> tuple[int, int]:
    """Train over one epoch's loader.

    Args:
        model: the (possibly DDP-wrapped) :class:`PairModel`.
        loader: this process's batches of the epoch's plan, from batch ``skip`` on.
        loss_fn: the contrastive loss.
        optimizer: the optimizer.
        scheduler: the per-step learning-rate schedule.
        config: the run's config.
        env: this process's place in the job.
        epoch: the epoch, for the log.
        step: optimizer steps done before this epoch.
        log: the step logger (master only).
        save: ``save(step, batches_done)`` writes a mid-epoch training state; called every
            ``config.save_every_steps`` optimizer steps when given.
        skip: batches of the plan done before ``loader`` (a mid-epoch resume).

    Returns:
        The optimizer step count after the epoch and the plan's batches done by then.

    """
    model.train()
    started, pairs, total, done = time.perf_counter(), 0, 0.0, skip
    for micro, (queries, references, _) in enumerate(loader, start=1):
        if config.max_steps is not None and step >= config.max_steps:
            break
        done += 1
        sync = micro % config.accum_steps == 0
        no_sync = isinstance(model, DistributedDataParallel) and not sync
        with model.no_sync() if no_sync else contextlib.nullcontext():
            with _autocast(env.device, config.precision):
                query_features, reference_features, logit_scale = model(
                    queries.to(env.device, non_blocking=True), references.to(env.device, non_blocking=True)
                )
            loss = loss_fn(query_features, reference_features, logit_scale)
            (loss / config.accum_steps).backward()
        total += float(loss.detach())
        pairs += len(queries) * env.world_size
        if not sync:
            continue
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        if log is not None:
            elapsed = time.perf_counter() - started
            log.log(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": total / config.accum_steps,
                    "lr": scheduler.get_last_lr()[0],
                    "logit_scale": float(logit_scale.detach().exp()),
                    "pairs_per_s": pairs / max(elapsed, 1e-9),
                }
            )
        total = 0.0
        if save is not None and config.save_every_steps and step % config.save_every_steps == 0:
            save(step, done)
    return step, done


def _save_state(
    network: GleamCNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    out: Path,
    epoch: int,
    step: int,
    position: tuple[list[list[int]], int] | None = None,
) -> None:
    """Write the resumable training state, after ``epoch`` or, with ``position``, inside it.

    ``position`` is the epoch's plan and how many of its batches are done; the plan is
    saved because a similarity plan cannot be rebuilt from mid-epoch weights.
    """
    state: dict[str, Any] = {
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "step": step,
    }
    if position is not None:
        plan, done = position
        state["plan"] = torch.tensor(plan, dtype=torch.int64)
        state["batches_done"] = done
    torch.save(state, out / f"{STATE_FILE}.tmp")
    (out / f"{STATE_FILE}.tmp").replace(out / STATE_FILE)


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: train one phase from a YAML config with optional ``key=value`` overrides."""
    parser = argparse.ArgumentParser(prog="python -m training.gleam_c.train", description=__doc__)
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return train(load_config(args.config, parse_overrides(args.set)))


if __name__ == "__main__":
    main()
