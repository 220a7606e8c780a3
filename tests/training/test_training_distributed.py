"""Two gloo processes on CPU must reproduce the single-process loss and gradients of the global batch."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gleam_geo.models import InfoNCELoss

WORLD = 2
BATCH = 8


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(12, 6)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, queries, references):
        return self.proj(queries), self.proj(references), self.logit_scale


def _inputs():
    generator = torch.Generator().manual_seed(3)
    return torch.randn(BATCH, 12, generator=generator), torch.randn(BATCH, 12, generator=generator)


def _step(model, loss_fn, queries, references):
    loss = loss_fn(*model(queries, references))
    loss.backward()
    module = model.module if isinstance(model, DistributedDataParallel) else model
    grads = {name: p.grad.detach().clone() for name, p in module.named_parameters()}
    module.zero_grad()
    return loss.detach(), grads


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    queries, references = _inputs()
    share = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    model = DistributedDataParallel(Tiny())
    results = {}
    for name, options in {
        "gathered": {},
        "local": {"local_loss": True},
        "no_grad_gather": {"gather_with_grad": False},
    }.items():
        loss_fn = InfoNCELoss(0.1, rank=rank, world_size=WORLD, **options)
        loss, grads = _step(model, loss_fn, queries[share], references[share])
        losses = [torch.zeros(()) for _ in range(WORLD)]
        dist.all_gather(losses, loss)
        results[name] = {"losses": torch.stack(losses), "grads": grads}
    if rank == 0:
        torch.save(results, os.path.join(out_dir, "ddp.pt"))
    dist.barrier()  # neither rank tears gloo down while the other still uses it (else SIGABRT at exit)
    del model
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_match_single_process_global_batch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = torch.load(tmp_path / "ddp.pt", weights_only=True)
    queries, references = _inputs()
    full_loss, full_grads = _step(Tiny(), InfoNCELoss(0.1), queries, references)

    gathered = results["gathered"]
    torch.testing.assert_close(gathered["losses"], full_loss.repeat(WORLD), rtol=1e-5, atol=1e-6)
    for name, grad in full_grads.items():
        torch.testing.assert_close(gathered["grads"][name], grad, rtol=1e-4, atol=1e-6)

    local = results["local"]  # per-process losses differ, their mean is the global loss
    assert not torch.allclose(local["losses"][0], local["losses"][1])
    torch.testing.assert_close(local["losses"].mean(), full_loss, rtol=1e-5, atol=1e-6)
    for name, grad in full_grads.items():
        torch.testing.assert_close(local["grads"][name], grad, rtol=1e-4, atol=1e-6)

    # Without the autograd gather only local rows carry gradients: DDP's average is 1/world of the encoder's.
    no_grad = results["no_grad_gather"]
    torch.testing.assert_close(no_grad["losses"], full_loss.repeat(WORLD), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        no_grad["grads"]["proj.weight"], full_grads["proj.weight"] / WORLD, rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(
        no_grad["grads"]["logit_scale"], full_grads["logit_scale"], rtol=1e-4, atol=1e-6
    )
