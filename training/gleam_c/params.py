"""The training configuration: a flat dataclass read from YAML, with command-line overrides.

A config may name another with ``base: <path>`` (relative to itself); its keys are read
first and overridden. A data source may name a per-dataset file with ``include: <path>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["SAMPLING_MODES", "TrainConfig", "load_config", "parse_overrides"]

SAMPLING_MODES = ("random", "gps", "similarity")


@dataclass
class TrainConfig:
    """Everything one training phase needs.

    Attributes:
        name: run name, also the checkpoint's model name.
        architecture: timm backbone of the :class:`~gleam_geo.models.GleamCNet`.
        img_size: square input side; panoramas are twice as wide.
        init_checkpoint: gleam_geo checkpoint to start from (phase 2 starts from phase 1).
        sources: data sources, each ``{type, ratio, ...adapter arguments}``.
        eval_source: an optional test source evaluated after each epoch.
        batch_size: pairs per process per step; the contrastive batch spans all processes.
        epochs: passes over the plan of batches.
        max_steps: stop after this many optimizer steps (``None``: run all epochs).
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: optimizer steps of linear warm-up.
        accum_steps: micro-batches per optimizer step (each micro-batch is its own contrastive batch).
        label_smoothing: InfoNCE label smoothing.
        local_loss: score only each process's rows against the gathered batch.
        gather_with_grad: gather features through an autograd-aware all-gather.
        grad_checkpointing: recompute activations in the backward pass.
        precision: ``bf16`` (autocast on GPU) or ``fp32``.
        sampling: ``random``, ``gps`` or ``similarity`` (GPS or random in the first epoch).
        neighbour_pool: nearest neighbours considered per anchor (e.g. 128).
        neighbour_pick: neighbours drawn from the pool per anchor (e.g. 64).
        num_workers: data-loader worker processes per process.
        output_dir: where checkpoints, logs and metrics go.
        resume: a training-state file to resume from, or ``"auto"`` for the output's latest.
        save_every_steps: also save the training state every this many optimizer steps, so a
            run resumes inside an epoch (0: only after each epoch).
        log: ``csv`` or ``tensorboard`` (falls back to CSV when not installed).
        seed: seeds batch plans and synthetic views.
        device: ``auto``, ``cuda`` or ``cpu``.
        training_data: free text written into the checkpoint's model card.

    """

    name: str = "gleam-c"
    architecture: str = "convnext_base"
    img_size: int = 384
    init_checkpoint: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    eval_source: dict[str, Any] | None = None
    batch_size: int = 32
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    accum_steps: int = 1
    label_smoothing: float = 0.1
    local_loss: bool = False
    gather_with_grad: bool = True
    grad_checkpointing: bool = False
    precision: str = "bf16"
    sampling: str = "similarity"
    neighbour_pool: int = 128
    neighbour_pick: int = 64
    num_workers: int = 4
    output_dir: str = "runs/gleam-c"
    resume: str | None = None
    save_every_steps: int = 0
    log: str = "csv"
    seed: int = 0
    device: str = "auto"
    training_data: str = ""

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be bf16 or fp32, got {self.precision!r}")
        if self.log not in ("csv", "tensorboard"):
            raise ValueError(f"log must be csv or tensorboard, got {self.log!r}")
        for name in ("batch_size", "epochs", "accum_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.save_every_steps < 0:
            raise ValueError(f"save_every_steps must be 0 or more, got {self.save_every_steps}")
        if not self.sources:
            raise ValueError("a training config needs at least one entry in 'sources'")
        for source in [*self.sources, *([self.eval_source] if self.eval_source else [])]:
            if "type" not in source:
                raise ValueError(f"data source {source} lacks 'type'")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, as written beside the checkpoints."""
        return dataclasses.asdict(self)


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ValueError(f"config {path} includes itself through 'base'")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config {path} must be a YAML mapping")
    base = data.pop("base", None)
    merged = _read_yaml(path.parent / base, (*seen, path)) if base else {}
    merged.update(data)
    for key in ("sources", "eval_source"):
        if key in data:
            merged[key] = _resolve_includes(data[key], path.parent)
    return merged


def _resolve_includes(value: Any, folder: Path) -> Any:
    """Replace ``include`` keys of source mappings by the included file's keys (overridden by the rest)."""
    if isinstance(value, list):
        return [_resolve_includes(item, folder) for item in value]
    if isinstance(value, dict) and "include" in value:
        included = yaml.safe_load((folder / value["include"]).read_text()) or {}
        return {**included, **{k: v for k, v in value.items() if k != "include"}}
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` overrides; values are YAML (``lr=3e-4``, ``max_steps=null``)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):
            with contextlib.suppress(ValueError):  # YAML 1.1 reads 3e-4 (no dot) as a string
                parsed = float(parsed)
        overrides[key.strip()] = parsed
    return overrides


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config (following ``base`` and ``include``) and apply ``overrides``.

    Raises:
        ValueError: unknown keys or invalid values.

    """
    data = _read_yaml(Path(path))
    data.update(overrides or {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown} in {path}; valid keys: {sorted(known)}")
    return TrainConfig(**data)
