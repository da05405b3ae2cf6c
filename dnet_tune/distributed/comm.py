"""torch.distributed for one run trained by several processes: the collectives the exact
data-parallel Difficulty-Net step needs, and how a global batch is cut into per-rank shards.

Why sums and not averages: a rank's shard of the last batch of an epoch can be smaller than the
others (or empty), and SyncBatchNorm couples the ranks' losses through the batch statistics. Each
rank therefore differentiates its *sum* of losses, the ranks all-reduce the gradient sums together
with their sample counts in one buffer, and every rank divides by the global count: exactly the
gradient of the one-process mean over the global batch, whatever the shard sizes.

`AllReduceSum` is an autograd Function with a backward and a forward-mode rule, so a synchronised
BatchNorm under `torch.autograd.forward_ad` (the meta step's JVP) and under `autograd.grad` (the
virtual step) stays exact. Nothing here imports Ray: a Ray Train worker hands over the process
group it initialised (`Comm.from_process_group`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dnet_tune.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor]


def backend_for(device: torch.device) -> str:
    """NCCL on CUDA, gloo on CPU; a build without it is one line before anything runs."""
    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed: --workers needs it; "
                        "install a PyTorch build with distributed support or drop --workers")
    if device.type == "cuda":
        if not dist.is_nccl_available():
            raise UserError("--workers on CUDA needs the NCCL backend, which this PyTorch build "
                            "lacks; install a CUDA build of PyTorch with NCCL or train on cpu")
        return "nccl"
    if not dist.is_gloo_available():
        raise UserError("--workers on CPU needs the gloo backend, which this PyTorch build "
                        "lacks; install a PyTorch build with gloo or drop --workers")
    return "gloo"


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class AllReduceSum(torch.autograd.Function):
    """y = Σ_ranks x on every rank. The total objective is the sum of the ranks' objectives, so
    ∂/∂x_r = Σ_ranks ∂L_rank/∂y: the backward is the same all-reduce, and so is the tangent."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return AllReduceSum.apply(grad)

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        out = tangent.clone()
        dist.all_reduce(out)
        return out


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable (backward and forward mode) sum over ranks."""
    return AllReduceSum.apply(x)


@dataclass(frozen=True)
class Comm:
    """This process's place in the group."""

    rank: int
    world: int

    @classmethod
    def from_process_group(cls) -> Comm:
        """From an initialised default group (the CLI's spawn or a Ray Train worker)."""
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("torch.distributed is not initialised")
        return cls(dist.get_rank(), dist.get_world_size())

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Plain (non-differentiable) sum over ranks, in a copy."""
        out = t.detach().clone()
        dist.all_reduce(out)
        return out

    def mean_of_sums(self, sums: Sequence[torch.Tensor], count: int
                     ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(Σ_ranks s / Σ_ranks count for each s, the global count): one all-reduce of one flat
        buffer, the count appended, so no host sync is needed."""
        ref = sums[0]
        flat = torch.cat([s.detach().reshape(-1).to(ref.dtype) for s in sums]
                         + [torch.tensor([float(count)], dtype=ref.dtype, device=ref.device)])
        dist.all_reduce(flat)
        total = flat[-1]
        out, at = [], 0
        for s in sums:
            out.append((flat[at:at + s.numel()] / total).view_as(s).to(s.dtype))
            at += s.numel()
        return out, total

    def average_grads(self, params: Sequence[torch.nn.Parameter], count: int) -> None:
        """Turn each rank's gradient of its loss *sum* into the global-mean gradient, in place.
        A parameter without a gradient has none on every rank (same graph) and stays None, as
        the one-process optimiser would skip it."""
        with_grad = [p for p in params if p.grad is not None]
        if not with_grad:
            return
        means, _ = self.mean_of_sums([p.grad for p in with_grad  # type: ignore[misc]
                                      ], count)
        for p, g in zip(with_grad, means, strict=True):
            p.grad = g

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of a global batch of n: `torch.tensor_split`'s rule (the
        first n mod world ranks take one more), so the ranks' shards concatenate to the batch."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def shard_batches(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """Each global batch (the one-process run's order and augmentation draws), cut to this
        rank's shard: no per-rank reshuffle."""
        for x, y in batches:
            s = self.shard(len(y))
            yield x[s], y[s]

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (seeded init is already identical on
        one kind of device; this makes it so whatever the device)."""
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)
