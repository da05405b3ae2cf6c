"""The virtual step and the meta loss through it (spec §4 step 2-3), reference implementation.

θ'(φ) = θ − α ∇_θ L_train(θ; w(φ)) is built with `create_graph=True`, so the meta cross-entropy
on the meta batch differentiates through θ' into w and into φ (double backward). This is the
plain, obviously-correct version every faster path is tested against.

BatchNorm: both virtual forwards run on *cloned* buffers, so the real running statistics are not
touched by the virtual step (the module's own buffers are never passed to `functional_call`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cloned_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in model.named_buffers()}


def virtual_params(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    lr: float,
    loss_fn: PerSampleLoss,
    buffers: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """θ' = θ − lr·∇θ L_train(θ; w), differentiable w.r.t. w (plain SGD: no momentum, no wd)."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    logits = functional_call(model, {**params, **buffers}, (x,))
    loss = (w[y] * loss_fn(logits, y)).mean()
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    return {name: p - lr * g for (name, p), g in zip(params.items(), grads, strict=True)}


def meta_loss_reference(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    lr: float,
    x_meta: torch.Tensor,
    y_meta: torch.Tensor,
    loss_fn: PerSampleLoss,
) -> torch.Tensor:
    """CE of the virtually-updated classifier on the meta batch; differentiable w.r.t. w."""
    buffers = cloned_buffers(model)
    new_params = virtual_params(model, x, y, w, lr, loss_fn, buffers)
    logits = functional_call(model, {**new_params, **buffers}, (x_meta,))
    return nn.functional.cross_entropy(logits, y_meta)
