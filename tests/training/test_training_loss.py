import math

import pytest
import torch
import torch.nn.functional as F

from gleam_geo.models import InfoNCELoss, gather_features


def _manual_loss(query, reference, scale, smoothing):
    q, r = F.normalize(query, dim=1), F.normalize(reference, dim=1)
    logits = math.exp(scale) * q @ r.T
    n = len(q)
    targets = torch.full((n, n), smoothing / n) + torch.eye(n) * (1 - smoothing)
    forward = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    backward = -(targets * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (forward + backward) / 2


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_matches_hand_written_symmetric_infonce(smoothing):
    torch.manual_seed(0)
    query, reference = torch.randn(6, 5), torch.randn(6, 5)
    scale = torch.tensor(math.log(1 / 0.07))
    loss = InfoNCELoss(smoothing)(query, reference, scale)
    assert loss.item() == pytest.approx(
        _manual_loss(query, reference, scale.item(), smoothing).item(), rel=1e-5
    )


def test_loss_prefers_matching_pairs_and_trains_the_scale():
    torch.manual_seed(0)
    reference = torch.randn(8, 16)
    scale = torch.nn.Parameter(torch.tensor(1.0))
    loss_fn = InfoNCELoss()
    matched = loss_fn(reference + 0.01 * torch.randn(8, 16), reference, scale)
    shuffled = loss_fn(reference.roll(1, dims=0), reference, scale)
    assert matched < shuffled
    matched.backward()
    assert scale.grad is not None and scale.grad < 0  # sharper logits lower the loss of matched pairs


def test_single_process_local_loss_equals_global_and_gather_is_identity():
    torch.manual_seed(1)
    query, reference, scale = torch.randn(4, 3), torch.randn(4, 3), torch.tensor(2.0)
    assert gather_features(query, rank=0, world_size=1) is query
    assert InfoNCELoss(local_loss=True)(query, reference, scale).item() == pytest.approx(
        InfoNCELoss()(query, reference, scale).item()
    )


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        InfoNCELoss()(torch.randn(3, 4), torch.randn(2, 4), torch.tensor(1.0))
