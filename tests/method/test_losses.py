"""Baseline losses and weights: closed-form checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from dnet_tune.method import losses


def test_focal_with_gamma_zero_is_cross_entropy():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    assert torch.allclose(losses.focal(logits, y, 0.0), losses.cross_entropy(logits, y))
    assert (losses.focal(logits, y, 2.0) < losses.cross_entropy(logits, y)).all()


def test_balanced_softmax_shifts_logits_by_log_prior():
    logits, y = torch.zeros(2, 2), torch.tensor([0, 1])
    log_prior = torch.log(torch.tensor([0.9, 0.1]))
    out = losses.balanced_softmax(logits, y, log_prior)
    assert out[0].item() == pytest.approx(-math.log(0.9))
    assert out[1].item() == pytest.approx(-math.log(0.1))


def test_weighted_mean_is_a_mean_not_normalised_by_weight_sum():
    per = torch.tensor([1.0, 2.0, 3.0])
    y = torch.tensor([0, 1, 1])
    w = torch.tensor([2.0, 0.5])
    assert losses.weighted_mean(per, y, w).item() == pytest.approx((2 + 1 + 1.5) / 3)
    assert torch.allclose(losses.weighted_mean(per, y, None), per.mean())


def test_class_balanced_weights_sum_to_c_and_favour_rare_classes():
    w = losses.class_balanced_weights([5000, 500, 50], beta=0.999)
    assert w.sum().item() == pytest.approx(3.0, rel=1e-6)
    assert w[0] < w[1] < w[2]
    n = torch.tensor([5000.0, 500.0, 50.0], dtype=torch.float64)
    raw = (1 - 0.999) / (1 - 0.999**n)
    assert torch.allclose(w.double(), raw * 3 / raw.sum(), rtol=1e-6)


def test_cdb_weights_follow_one_minus_accuracy_to_the_tau():
    a = torch.tensor([0.9, 0.5, 0.1])
    w = losses.cdb_weights(a, 2.0)
    raw = (1 - a) ** 2
    assert torch.allclose(w, raw * 3 / raw.sum())
    assert torch.allclose(losses.cdb_weights(a, 0.0), torch.ones(3))


def test_cdb_dynamic_tau_formula():
    a = torch.tensor([0.9, 0.5, 0.1])
    expected = 2 / (1 + math.exp(-(0.9 / (0.1 + 0.01) - 1)))
    assert losses.cdb_tau(a, "dynamic") == pytest.approx(expected)
    assert losses.cdb_weights(a, "dynamic").sum().item() == pytest.approx(3.0, rel=1e-6)
    # all-equal accuracies → τ = 2σ(~0) ≈ 1 → uniform weights
    assert torch.allclose(losses.cdb_weights(torch.full((3,), 0.5), "dynamic"), torch.ones(3))


def test_cross_entropy_matches_torch():
    logits, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    assert torch.allclose(losses.cross_entropy(logits, y).mean(), F.cross_entropy(logits, y))
