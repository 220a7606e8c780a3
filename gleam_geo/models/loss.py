"""Symmetric InfoNCE for GLEAM-C training, with features gathered across processes.

Every process embeds its share of the batch; :func:`gather_features` collects the
features of all processes so the contrastive batch spans every GPU. The loss lives in
the library so training code and any re-implementation use the same definition.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["InfoNCELoss", "gather_features"]


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every process's gradient and returns this process's rows."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, features: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.world_size = dist.get_rank(), dist.get_world_size()
        parts = [torch.empty_like(features) for _ in range(ctx.world_size)]
        dist.all_gather(parts, features.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        rows = grad.shape[0] // ctx.world_size
        return grad[ctx.rank * rows : (ctx.rank + 1) * rows]


def gather_features(
    features: torch.Tensor, *, rank: int, world_size: int, gather_with_grad: bool = True
) -> torch.Tensor:
    """Concatenate the ``(n, D)`` features of every process in rank order.

    Args:
        features: this process's features; every process must pass the same shape.
        rank: this process's rank.
        world_size: number of processes; with 1 the features come back unchanged.
        gather_with_grad: gather through an autograd-aware all-gather, so gradients flow
            back to the process that computed each row. When ``False``, rows of other
            processes are constants and only this process's own rows (put back in place
            of their gathered copies) carry gradients.

    Returns:
        A ``(world_size * n, D)`` tensor; rows ``rank * n`` to ``(rank + 1) * n`` are ``features``.

    """
    if world_size == 1:
        return features
    if gather_with_grad:
        return _AllGatherWithGrad.apply(features)
    parts = [torch.empty_like(features) for _ in range(world_size)]
    dist.all_gather(parts, features.detach())
    parts[rank] = features
    return torch.cat(parts, dim=0)


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE (query to reference and reference to query) over gathered features.

    Row ``i`` of the queries and row ``i`` of the references are a positive pair; every
    other reference in the (global) batch is a negative. Features are L2-normalised here.

    Attributes:
        label_smoothing: cross-entropy label smoothing (0.1 in Sample4Geo and GLEAM-C).
        rank: this process's rank.
        world_size: number of processes whose features form the contrastive batch.
        local_loss: score only this process's rows against the global batch (less memory
            and compute; the loss of each process then differs).
        gather_with_grad: see :func:`gather_features`.

    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        *,
        rank: int = 0,
        world_size: int = 1,
        local_loss: bool = False,
        gather_with_grad: bool = True,
    ) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.rank = rank
        self.world_size = world_size
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad

    def forward(
        self, query_features: torch.Tensor, reference_features: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        """Return the loss of this process's ``(n, D)`` query and reference features.

        Args:
            query_features: features of the query views (UAV, panorama...).
            reference_features: features of the matching satellite images, row for row.
            logit_scale: log inverse temperature (``GleamCNet.logit_scale``); ``exp`` is applied here.

        """
        if query_features.shape != reference_features.shape:
            raise ValueError(
                f"query and reference features must have the same shape, got "
                f"{tuple(query_features.shape)} and {tuple(reference_features.shape)}"
            )
        query = F.normalize(query_features.float(), dim=-1)
        reference = F.normalize(reference_features.float(), dim=-1)
        gather = {"rank": self.rank, "world_size": self.world_size, "gather_with_grad": self.gather_with_grad}
        all_query = gather_features(query, **gather)
        all_reference = gather_features(reference, **gather)
        scale = logit_scale.float().exp()
        if self.local_loss:
            per_query = scale * query @ all_reference.T
            per_reference = scale * reference @ all_query.T
            offset = self.rank * query.shape[0]
        else:
            per_query = scale * all_query @ all_reference.T
            per_reference = per_query.T
            offset = 0
        labels = torch.arange(per_query.shape[0], device=per_query.device) + offset
        return 0.5 * (
            F.cross_entropy(per_query, labels, label_smoothing=self.label_smoothing)
            + F.cross_entropy(per_reference, labels, label_smoothing=self.label_smoothing)
        )
