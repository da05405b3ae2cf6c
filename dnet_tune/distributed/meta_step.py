"""The real step and the exact JVP meta-gradient when one run is trained by several processes.

Same mathematics as `dnet_tune.method.meta_step.meta_grad_jvp` (spec §4), with the global batch
split across ranks. Every mean of the one-process step becomes a sum per rank, all-reduced with
the ranks' counts and divided by the global count (`Comm.mean_of_sums`), so that:
- the virtual step θ' = θ − α ∇θ L_train uses the gradient of the global batch's loss;
- g = ∇θ' CE_meta is the gradient of the CE over the global meta batch;
- the per-class directional derivatives ⟨g, ∇θ S_c⟩ are summed over ranks before the division
  by the global batch size;
so ∂CE_meta/∂w, and with it φ's Adam step, is the same on every rank and equal to the
one-process value up to rounding. BatchNorm statistics are shared through
`dnet_tune.distributed.sync_bn` inside the forwards. The double-backward reference (`meta_impl:
reference`) is not offered here: runs with workers refuse it before anything starts.

The one-process path is untouched: `Method.dist` is None there.
"""

from __future__ import annotations

import contextlib

import torch
import torch.autograd.forward_ad as fwad
from torch import nn

from dnet_tune.distributed.comm import Comm
from dnet_tune.method.meta_step import (
    PerSampleLoss,
    _load_forward_ad,
    _logits,
    cloned_buffers,
    trainable_params,
)


class DistributedSteps:
    """What `Method` delegates to when `Method.dist` is set (several processes, one run)."""

    def __init__(self, comm: Comm) -> None:
        self.comm = comm

    def real_step(
        self,
        model: nn.Module,
        per_sample: torch.Tensor,
        y: torch.Tensor,
        w: torch.Tensor | None,
        optimizer: torch.optim.Optimizer,
    ) -> torch.Tensor:
        """One SGD step on the global batch's mean loss; returns this rank's mean (detached)."""
        local = (per_sample if w is None else w[y] * per_sample).sum()
        optimizer.zero_grad(set_to_none=True)
        local.backward()
        self.comm.average_grads([p for p in model.parameters() if p.requires_grad], len(y))
        optimizer.step()
        return local.detach() / max(len(y), 1)

    def meta_grad_jvp(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        w: torch.Tensor,
        lr: float | torch.Tensor,
        x_meta: torch.Tensor,
        y_meta: torch.Tensor,
        loss_fn: PerSampleLoss,
        per_sample: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(∂CE_meta/∂w, CE_meta) over the global batches; see `meta_step.meta_grad_jvp`."""
        comm = self.comm
        buffers = cloned_buffers(model)
        params = trainable_params(model)
        names, leaves = list(params), list(params.values())
        w = w.detach()
        keep = per_sample is not None
        with torch.enable_grad():
            if per_sample is None:
                per_sample = loss_fn(_fp32(model, {**params, **cloned_buffers(model)}, x),
                                     y)
            local = (w[y] * per_sample).sum()
            grads, n = comm.mean_of_sums(
                torch.autograd.grad(local, leaves, retain_graph=keep), len(y))
            virtual = {name: (p - lr * g).detach().requires_grad_() for name, p, g in
                       zip(names, leaves, grads, strict=True)}
            ce_sum = nn.functional.cross_entropy(
                _fp32(model, {**virtual, **buffers}, x_meta), y_meta, reduction="sum")
            g_sums = torch.autograd.grad(ce_sum, list(virtual.values()))
            (*g_meta, meta_ce), _ = comm.mean_of_sums([*g_sums, ce_sum.detach()], len(y_meta))
        _load_forward_ad()
        with torch.no_grad(), fwad.dual_level():
            duals = {name: fwad.make_dual(p.detach(), t) for name, p, t in
                     zip(names, leaves, g_meta, strict=True)}
            logits = _fp32(model, {**duals, **cloned_buffers(model)}, x)
            per_dual = loss_fn(logits, y)
            # Σ_{i∈shard, y_i=c} ℓ_i (a one-hot matmul, as `class_sums`, with its division by
            # the batch size moved after the sum over ranks: a shard may be empty)
            s = per_dual @ nn.functional.one_hot(y, w.shape[-1]).to(per_dual.dtype)
            tangent = fwad.unpack_dual(s).tangent
        local_dir = torch.zeros_like(w) if tangent is None else tangent.to(w.dtype)
        directional = comm.sum(local_dir) / n.to(w.dtype)
        return -lr * directional, meta_ce


def _fp32(model: nn.Module, tensors: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """A stateless forward; the meta step never runs under autocast (see DifficultyNetMethod)."""
    return _logits(model, tensors, x, contextlib.nullcontext)
