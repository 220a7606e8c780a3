"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["cosine_with_warmup"]


def cosine_with_warmup(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_factor: float = 0.0
) -> LambdaLR:
    """A per-step schedule: from 0 to the base rate over ``warmup_steps``, then cosine to ``min_factor``.

    Args:
        optimizer: the optimizer whose base learning rates are scaled.
        warmup_steps: optimizer steps of linear warm-up.
        total_steps: optimizer steps of the whole run.
        min_factor: final learning rate as a fraction of the base rate.

    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
