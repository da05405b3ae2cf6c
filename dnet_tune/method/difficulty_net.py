"""Difficulty-Net (spec §1-§3): per-class accuracies `a` -> difficulties `d` -> class weights `w`.

The relative form maps the whole vector (each output sees every class), which is what lets the
net express *relative* difficulty; the absolute ablation shares one scalar MLP across classes.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


class DifficultyNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        hidden: list[int],
        *,
        bias: bool = False,
        input_mode: str = "relative",
    ) -> None:
        super().__init__()
        if input_mode not in ("relative", "absolute"):
            raise ValueError(f"input_mode must be relative or absolute, got {input_mode!r}")
        self.num_classes = num_classes
        self.input_mode = input_mode
        width = num_classes if input_mode == "relative" else 1
        dims = [width, *hidden, width]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(d_in, d_out, bias=bias))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """`a`: shape (C,) accuracies in [0, 1]; returns difficulties in (0, 1), shape (C,)."""
        if self.input_mode == "relative":
            return torch.sigmoid(self.mlp(a))
        return torch.sigmoid(self.mlp(a.unsqueeze(-1))).squeeze(-1)


def class_weights(d: torch.Tensor) -> torch.Tensor:
    """w_c = C · d_c / Σ_j d_j: weights with mean 1, so the loss scale matches plain CE."""
    return d.shape[-1] * d / d.sum(dim=-1, keepdim=True)


def driver_target(a: torch.Tensor, mode: str = "relative") -> torch.Tensor:
    """Relative target 1 − a_c/Σa (spec §3); the ablation's absolute target is 1 − a_c."""
    if mode == "relative":
        return 1.0 - a / (a.sum() + 1e-12)
    if mode == "absolute":
        return 1.0 - a
    raise ValueError(f"driver target must be relative or absolute, got {mode!r}")


def driver_loss(d: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the raw sigmoid outputs, before the weight normalisation."""
    return ((d - target) ** 2).mean()
