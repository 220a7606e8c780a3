"""Batch plans for contrastive training: random, GPS and embedding-similarity hard negatives.

A plan is a list of global batches (lists of pair indices), rebuilt every epoch, in which
no two pairs share a group. :class:`DistributedBatchSampler` gives each process its slice
of every global batch, so a hard-negative batch stays whole across the gathered features.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

__all__ = [
    "DistributedBatchSampler",
    "embedding_neighbours",
    "gps_neighbours",
    "hard_negative_batches",
    "interleave_batches",
    "random_batches",
]

_EARTH_RADIUS_M = 6_371_008.8


def random_batches(groups: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffled full batches in which no group appears twice (the rest of the epoch is dropped)."""
    return hard_negative_batches(np.zeros((len(groups), 0), dtype=np.int64), groups, batch_size, 0, rng)


def hard_negative_batches(
    neighbours: np.ndarray, groups: np.ndarray, batch_size: int, pick: int, rng: np.random.Generator
) -> list[list[int]]:
    """Full batches built around random anchors and their nearest neighbours.

    Anchors are visited in random order; each free anchor joins the open batch together
    with up to ``pick`` free pairs drawn at random from its neighbour pool. Every pair is
    used at most once and no batch holds two pairs of one group.

    Args:
        neighbours: ``(N, pool)`` indices of each pair's nearest pairs, nearest first.
        groups: ``(N,)`` group id of each pair.
        batch_size: pairs per (global) batch.
        pick: neighbours drawn per anchor from its pool (0 gives random batches).
        rng: random generator (same seed on every process gives the same plan).

    Returns:
        The batches; a last incomplete batch is dropped.

    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    used = np.zeros(len(groups), dtype=bool)
    batches: list[list[int]] = []
    batch: list[int] = []
    batch_groups: set[str] = set()

    def add(index: int) -> None:
        used[index] = True
        batch.append(index)
        batch_groups.add(groups[index])

    for anchor in rng.permutation(len(groups)):
        if used[anchor] or groups[anchor] in batch_groups:
            continue
        add(int(anchor))
        pool = neighbours[anchor]
        for candidate in rng.permutation(pool)[:pick] if pick else ():
            if len(batch) >= batch_size:
                break
            if not used[candidate] and groups[candidate] not in batch_groups:
                add(int(candidate))
        if len(batch) >= batch_size:
            batches.append(batch)
            batch, batch_groups = [], set()
    return batches


def embedding_neighbours(embeddings: torch.Tensor, pool: int, chunk: int = 4096) -> np.ndarray:
    """Indices of each row's ``pool`` most cosine-similar other rows, nearest first."""
    unit = F.normalize(embeddings.float(), dim=1)
    pool = min(pool, len(unit) - 1)
    rows = []
    for start in range(0, len(unit), chunk):
        scores = unit[start : start + chunk] @ unit.T
        scores[torch.arange(len(scores)), torch.arange(start, start + len(scores))] = -float("inf")
        rows.append(scores.topk(pool, dim=1).indices)
    return torch.cat(rows).cpu().numpy()


def gps_neighbours(latlon: np.ndarray, pool: int, chunk: int = 2048) -> np.ndarray:
    """Indices of each point's ``pool`` nearest other points by great-circle distance."""
    lat, lon = np.deg2rad(latlon[:, 0]), np.deg2rad(latlon[:, 1])
    pool = min(pool, len(latlon) - 1)
    rows = []
    for start in range(0, len(latlon), chunk):
        a_lat, a_lon = lat[start : start + chunk, None], lon[start : start + chunk, None]
        haversine = (
            np.sin((lat - a_lat) / 2) ** 2 + np.cos(a_lat) * np.cos(lat) * np.sin((lon - a_lon) / 2) ** 2
        )
        distance = 2 * _EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(haversine, 0, 1)))
        distance[np.arange(len(distance)), np.arange(start, start + len(distance))] = np.inf
        nearest = np.argpartition(distance, pool - 1, axis=1)[:, :pool]
        order = np.take_along_axis(distance, nearest, axis=1).argsort(axis=1)
        rows.append(np.take_along_axis(nearest, order, axis=1))
    return np.concatenate(rows)


def interleave_batches(
    per_source: Sequence[list[list[int]]], ratios: Sequence[float], rng: np.random.Generator
) -> list[list[int]]:
    """Mix the batch plans of several sources by sampling ratio.

    Each step draws a source with probability proportional to its ratio and takes its next
    batch, restarting a source's plan when it runs out; the epoch has as many batches as
    all plans together. Batches never mix sources, so hard negatives stay within one view.
    """
    if len(per_source) != len(ratios):
        raise ValueError("one sampling ratio is needed per source")
    weights = np.asarray(
        [r if plan else 0.0 for r, plan in zip(ratios, per_source, strict=True)], dtype=float
    )
    if weights.sum() <= 0:
        return []
    steps = sum(len(plan) for plan in per_source)
    cursors = [0] * len(per_source)
    mixed = []
    for source in rng.choice(len(per_source), size=steps, p=weights / weights.sum()):
        plan = per_source[source]
        mixed.append(plan[cursors[source] % len(plan)])
        cursors[source] += 1
    return mixed


class DistributedBatchSampler(Sampler[list[int]]):
    """Yields this process's contiguous slice of each global batch of a plan.

    Every process must get the same plan (build it from the same seed). Global batches
    must hold ``world_size`` times the per-process batch size.
    """

    def __init__(self, batches: Sequence[Sequence[int]], *, rank: int = 0, world_size: int = 1) -> None:
        """Slice ``batches`` for process ``rank`` of ``world_size``."""
        for batch in batches:
            if len(batch) % world_size:
                raise ValueError(
                    f"global batch of {len(batch)} pairs does not split over {world_size} processes"
                )
        self.batches = batches
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            share = len(batch) // self.world_size
            yield list(batch[self.rank * share : (self.rank + 1) * share])
