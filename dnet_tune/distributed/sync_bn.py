"""A BatchNorm whose training statistics are those of the global batch over all ranks.

Why not `torch.nn.SyncBatchNorm`: its statistics go through an autograd Function without a
forward-mode rule, so the meta step's JVP (a `torch.autograd.forward_ad` dual forward, see
`dnet_tune.method.meta_step`) cannot pass through it, and its kernels are written for GPUs. This
one is made of ordinary differentiable ops plus `dnet_tune.distributed.comm.all_reduce_sum`, which
has a backward and a forward-mode rule, so the virtual step (`autograd.grad`), the meta-gradient
and the dual forward all see the one-process BatchNorm of the global batch.

Two passes (Σx, then Σ(x − mean)²) rather than Σx² − (Σx)²/n: the same cancellation-free
variance a one-process BatchNorm computes, so the two runs agree to rounding. It subclasses
`nn.BatchNorm2d`/`1d` with the same parameter and buffer names: checkpoints, `functional_call`
and the optimiser see the same tensors as before the swap.
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwad
from torch import nn

from dnet_tune.distributed.comm import active, all_reduce_sum

_Norm = nn.BatchNorm1d | nn.BatchNorm2d


def _global_batch_norm(bn: _Norm, x: torch.Tensor) -> torch.Tensor:
    dims = [0, *range(2, x.dim())]
    shape = [1, -1, *([1] * (x.dim() - 2))]
    local_n = x.numel() // max(x.shape[1], 1)
    sums = all_reduce_sum(torch.cat([x.sum(dims), x.new_tensor([float(local_n)])]))
    n = sums[-1]
    mean = sums[:-1] / n
    centred = x - mean.view(shape)
    var = all_reduce_sum((centred * centred).sum(dims)) / n
    _update_running(bn, mean, var, n)
    out = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    return out


def _update_running(bn: _Norm, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
    """As `F.batch_norm` does: momentum (or the cumulative average when None), the unbiased
    variance, on the values only (never a gradient or a tangent)."""
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return
    with torch.no_grad():
        mean_v, var_v, n_v = (fwad.unpack_dual(t).primal.detach() for t in (mean, var, n))
        assert bn.num_batches_tracked is not None
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        unbiased = var_v * n_v / (n_v - 1).clamp(min=1)
        bn.running_mean.mul_(1 - factor).add_(mean_v.to(bn.running_mean.dtype) * factor)
        bn.running_var.mul_(1 - factor).add_(unbiased.to(bn.running_var.dtype) * factor)


class SyncBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and active():
            return _global_batch_norm(self, x)
        return super().forward(x)


class SyncBatchNorm1d(nn.BatchNorm1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and active():
            return _global_batch_norm(self, x)
        return super().forward(x)


_SYNCED: dict[type[nn.Module], type[SyncBatchNorm1d | SyncBatchNorm2d]] = {
    nn.BatchNorm2d: SyncBatchNorm2d, nn.BatchNorm1d: SyncBatchNorm1d}
_OTHER_NORMS = (nn.BatchNorm3d, nn.SyncBatchNorm, nn.LazyBatchNorm1d, nn.LazyBatchNorm2d,
                nn.LazyBatchNorm3d)


def unsupported_norms(model: nn.Module) -> list[str]:
    """BatchNorm layers this module cannot synchronise (3d, lazy, torch's own SyncBatchNorm)."""
    return [name for name, m in model.named_modules() if isinstance(m, _OTHER_NORMS)]


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """Swap every BatchNorm1d/2d for its synchronised twin, keeping the very same parameter and
    buffer tensors (an optimiser built before the swap still holds them)."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            synced = _SYNCED.get(type(child))
            if synced is None:
                continue
            assert isinstance(child, nn.BatchNorm1d | nn.BatchNorm2d)
            new = synced(child.num_features, eps=child.eps, momentum=child.momentum,
                         affine=child.affine, track_running_stats=child.track_running_stats,
                         device="meta")
            for name in ("weight", "bias", "running_mean", "running_var",
                         "num_batches_tracked"):
                setattr(new, name, getattr(child, name))
            new.train(child.training)
            setattr(parent, child_name, new)
    return model

