"""Per-sample losses and fixed/accuracy-driven class weights for the baselines.

All losses return *per-sample* values so that every method reduces the same way
(`(w[y] · ℓ).mean()`, spec §1: a mean, not normalised by Σw).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def balanced_softmax(
    logits: torch.Tensor, y: torch.Tensor, log_prior: torch.Tensor
) -> torch.Tensor:
    """Ren et al. 2020: CE on logits shifted by the log class prior of the training set."""
    return F.cross_entropy(logits + log_prior, y, reduction="none")


def focal(logits: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    logp = F.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    return -((1.0 - logp.exp()) ** gamma) * logp


def weighted_mean(
    per_sample: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None
) -> torch.Tensor:
    if w is None:
        return per_sample.mean()
    return (w[y] * per_sample).mean()


def normalise(w: torch.Tensor) -> torch.Tensor:
    """Scale weights to sum to C (mean 1), the convention shared with Difficulty-Net."""
    return w * (w.shape[0] / w.sum())


def class_balanced_weights(counts: list[int], beta: float) -> torch.Tensor:
    """Cui et al. 2019: inverse effective number (1 − β^n)/(1 − β), normalised to sum C."""
    n = torch.tensor(counts, dtype=torch.float64).clamp(min=1)
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n))
    return normalise(w).float()


def cdb_tau(a: torch.Tensor, tau: float | str) -> float:
    """CDB's τ; "dynamic" follows the CDB CIFAR code: τ = 2·σ(max a / (min a + 0.01) − 1)."""
    if tau == "dynamic":
        ratio = float(a.max()) / (float(a.min()) + 0.01)
        return 2.0 / (1.0 + math.exp(-(ratio - 1.0)))
    return float(tau)


def cdb_weights(a: torch.Tensor, tau: float | str) -> torch.Tensor:
    """CDB (Sinha et al. 2020): w_c ∝ (1 − a_c)^τ, normalised to sum C.

    A class at 100% accuracy gets a tiny floor instead of 0 so it is never dropped entirely.
    """
    difficulty = (1.0 - a).clamp(min=1e-3)
    return normalise(difficulty ** cdb_tau(a, tau))
