"""Optimiser steps that a CUDA graph can hold: device-tensor lr and step count, no host read.

`torch.optim.SGD.step` turns a tensor lr into a Python number (a device->host sync, which a
graph cannot contain), and `torch.optim.Adam(capturable=True)` refuses CPU tensors, so the
capturable formulation could not be run, and checked against today's step, without a GPU.
These two functions are that formulation: the same update rules as `torch.optim.SGD` and
`torch.optim.Adam` (L2 weight decay, momentum/dampening/Nesterov; bias-corrected moments), written
with tensor arithmetic only, so the same code runs eagerly on the CPU (tests) and inside a graph.

They read and write the optimiser's own `state` entries under torch's names (`momentum_buffer`,
`step`, `exp_avg`, `exp_avg_sq`): a checkpoint written after graphed steps is the optimiser's
ordinary `state_dict`, and an eager run resumed from it continues from the same moments.

Numerics: the update rules are the same, the rounding is not. torch computes Adam's bias
corrections in float64 on the host (from `step.item()`) and applies lr through a fused `alpha`;
here they are float32 device tensors. The results agree to float32 rounding per step (relative
~1e-7), which the tests check with a stated tolerance; they are not bit-identical, which is why a
normal eager run never goes through here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

OptimizerStep = Callable[[torch.optim.Optimizer], None]


def plain_step(optimizer: torch.optim.Optimizer) -> None:
    """Today's step: what every eager run takes."""
    optimizer.step()


def _grads(group: dict, state: dict) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
    return [(p, p.grad, state.setdefault(p, {})) for p in group["params"] if p.grad is not None]


@torch.no_grad()
def sgd_step(optimizer: torch.optim.Optimizer, lr: torch.Tensor) -> None:
    """`torch.optim.SGD`'s rule with `lr` a 0-d tensor on the parameters' device."""
    for group in optimizer.param_groups:
        if group.get("maximize") or group.get("differentiable"):
            raise ValueError("capturable SGD supports neither maximize nor differentiable")
        wd, mom = group["weight_decay"], group["momentum"]
        damp, nesterov = group["dampening"], group["nesterov"]
        for p, grad, st in _grads(group, optimizer.state):
            d_p = grad.add(p, alpha=wd) if wd != 0 else grad
            if mom != 0:
                buf = st.get("momentum_buffer")
                if buf is None:  # the first step, as torch: the buffer starts as the gradient
                    buf = st["momentum_buffer"] = d_p.detach().clone()
                else:
                    buf.mul_(mom).add_(d_p, alpha=1 - damp)
                d_p = d_p.add(buf, alpha=mom) if nesterov else buf
            p.addcmul_(d_p, lr, value=-1)


@torch.no_grad()
def adam_step(optimizer: torch.optim.Optimizer) -> None:
    """`torch.optim.Adam`'s rule (no amsgrad) with the step count a device tensor."""
    for group in optimizer.param_groups:
        if group.get("amsgrad") or group.get("maximize") or group.get("decoupled_weight_decay"):
            raise ValueError("capturable Adam supports neither amsgrad, maximize nor AdamW")
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        for p, grad, st in _grads(group, optimizer.state):
            if "step" not in st:
                st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif st["step"].device != p.device:  # an eager step kept it on the host
                st["step"] = st["step"].to(p.device)
            step, m, v = st["step"], st["exp_avg"], st["exp_avg_sq"]
            step.add_(1)
            g = grad.add(p, alpha=wd) if wd != 0 else grad
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            bc1 = 1 - torch.pow(beta1, step)
            bc2_sqrt = (1 - torch.pow(beta2, step)).sqrt()
            denom = (v.sqrt() / bc2_sqrt).add_(eps)
            p.addcdiv_(m, denom * (bc1 / lr), value=-1)


class CapturableSteps:
    """The `Method.optimizer_step` of a graphed run: SGD with the run's device lr, Adam with its
    device step count. Any other optimiser is a bug of the caller (the plan refuses it first)."""

    def __init__(self, lr: torch.Tensor) -> None:
        self.lr = lr

    def __call__(self, optimizer: torch.optim.Optimizer) -> None:
        if isinstance(optimizer, torch.optim.SGD):
            sgd_step(optimizer, self.lr)
        elif isinstance(optimizer, torch.optim.Adam):
            adam_step(optimizer)
        else:
            raise TypeError(f"no capturable step for {type(optimizer).__name__}")
