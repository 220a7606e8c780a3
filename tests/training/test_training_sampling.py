import numpy as np
import pytest
import torch

from training.gleam_c.sampling import (
    DistributedBatchSampler,
    embedding_neighbours,
    gps_neighbours,
    hard_negative_batches,
    interleave_batches,
    random_batches,
)


def test_embedding_neighbours_are_nearest_first_and_exclude_self():
    points = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    neighbours = embedding_neighbours(points, pool=2)
    assert neighbours[0].tolist() == [1, 3]
    assert neighbours[2].tolist() == [3, 1]
    assert all(i not in row for i, row in enumerate(neighbours))


def test_gps_neighbours_use_great_circle_distance():
    latlon = np.array([[0.0, 0.0], [0.0, 0.001], [10.0, 10.0], [0.0, 179.999], [0.0, -179.999]])
    neighbours = gps_neighbours(latlon, pool=1)
    assert neighbours[[0, 1, 3, 4], 0].tolist() == [1, 0, 4, 3]  # across the antimeridian too


def test_hard_negative_batches_group_neighbours_and_never_repeat():
    rng = np.random.default_rng(0)
    # two clusters of 8; each pair's neighbours are the rest of its cluster
    cluster = np.repeat([0, 1], 8)
    neighbours = np.array([[j for j in range(16) if cluster[j] == cluster[i] and j != i] for i in range(16)])
    groups = np.array([f"g{i}" for i in range(16)])
    batches = hard_negative_batches(neighbours, groups, batch_size=8, pick=7, rng=rng)
    assert len(batches) == 2
    for batch in batches:
        assert len(set(cluster[batch])) == 1  # each batch is one cluster of hard negatives
    flat = [i for batch in batches for i in batch]
    assert len(flat) == len(set(flat))


def test_batches_never_hold_two_pairs_of_one_group():
    groups = np.array(["a", "a", "a", "b", "c", "d", "e", "f"])
    for seed in range(5):
        for batch in random_batches(groups, 4, np.random.default_rng(seed)):
            assert len(set(groups[batch])) == len(batch) == 4


def test_distributed_sampler_splits_each_global_batch_between_ranks():
    plan = [[0, 1, 2, 3], [4, 5, 6, 7]]
    ranks = [list(DistributedBatchSampler(plan, rank=r, world_size=2)) for r in range(2)]
    assert ranks[0] == [[0, 1], [4, 5]] and ranks[1] == [[2, 3], [6, 7]]
    assert len(DistributedBatchSampler(plan, rank=0, world_size=2)) == 2
    with pytest.raises(ValueError, match="split"):
        DistributedBatchSampler([[0, 1, 2]], rank=0, world_size=2)


def test_interleave_follows_ratios_and_keeps_sources_apart():
    panorama = [[i, i + 1] for i in range(0, 200, 2)]
    uav = [[i, i + 1] for i in range(1000, 1200, 2)]
    mixed = interleave_batches([panorama, uav], [3.0, 1.0], np.random.default_rng(0))
    assert len(mixed) == 200
    share = np.mean([batch[0] < 1000 for batch in mixed])
    assert 0.68 < share < 0.82
    assert all((b[0] < 1000) == (b[1] < 1000) for b in mixed)
