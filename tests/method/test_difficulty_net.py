"""Difficulty-Net's forward, weights and driver loss against the spec's formulas."""

import pytest
import torch

from dnet_tune.method.difficulty_net import (
    DifficultyNet,
    class_weights,
    driver_loss,
    driver_target,
)


@pytest.mark.parametrize("input_mode", ["relative", "absolute"])
@pytest.mark.parametrize("hidden", [[16], [32, 32], [8, 8, 8]])
def test_zero_accuracy_without_bias_gives_half_and_uniform_weights(input_mode, hidden):
    torch.manual_seed(0)
    dn = DifficultyNet(10, hidden, bias=False, input_mode=input_mode)
    d = dn(torch.zeros(10))
    assert torch.allclose(d, torch.full((10,), 0.5))
    assert torch.allclose(class_weights(d), torch.ones(10))


def test_weights_sum_to_num_classes_and_follow_difficulty():
    torch.manual_seed(1)
    dn = DifficultyNet(7, [32, 32], bias=True)
    d = dn(torch.rand(7))
    w = class_weights(d)
    assert w.sum().item() == pytest.approx(7.0, rel=1e-6)
    assert torch.equal(torch.argsort(w), torch.argsort(d))


def test_relative_mode_sees_all_classes_absolute_does_not():
    torch.manual_seed(2)
    a = torch.rand(5)
    b = a.clone()
    b[4] = 1.0 - b[4]  # change only class 4's accuracy
    rel = DifficultyNet(5, [16, 16], bias=True, input_mode="relative")
    assert not torch.allclose(rel(a)[:4], rel(b)[:4])
    ab = DifficultyNet(5, [16, 16], bias=True, input_mode="absolute")
    assert torch.allclose(ab(a)[:4], ab(b)[:4])
    assert sum(p.numel() for p in ab.parameters()) < sum(p.numel() for p in rel.parameters())


def test_driver_target_and_loss_hand_computed():
    a = torch.tensor([0.8, 0.4, 0.0, 0.8])  # Σa = 2.0
    t = driver_target(a, "relative")
    assert torch.allclose(t, torch.tensor([0.6, 0.8, 1.0, 0.6]))
    assert torch.allclose(driver_target(a, "absolute"), torch.tensor([0.2, 0.6, 1.0, 0.2]))
    d = torch.tensor([0.5, 0.5, 0.5, 0.5])
    # (0.1² + 0.3² + 0.5² + 0.1²) / 4 = (0.01 + 0.09 + 0.25 + 0.01) / 4 = 0.09
    assert driver_loss(d, t).item() == pytest.approx(0.09)


def test_relative_target_of_all_zero_accuracies_is_one():
    assert torch.allclose(driver_target(torch.zeros(3)), torch.ones(3))
