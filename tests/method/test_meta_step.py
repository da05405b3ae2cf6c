"""The meta-gradient of Difficulty-Net: full vs detached, finite differences, BatchNorm safety."""

import copy

import pytest
import torch
from torch import nn

from dnet_tune.config import Config
from dnet_tune.method.difficulty_net import class_weights, driver_loss, driver_target
from dnet_tune.method.losses import cross_entropy
from dnet_tune.method.meta_step import meta_loss_reference
from dnet_tune.method.methods import DifficultyNetMethod

C = 3


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, C)).double()


def batches():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64)
    y = torch.arange(12) % C
    xm = torch.randn(9, 6, generator=g, dtype=torch.float64)
    ym = torch.arange(9) % C
    return x, y, xm, ym


def make_method(meta_grad: str, lam: float) -> DifficultyNetMethod:
    cfg = Config()
    cfg.method.meta_grad = meta_grad
    cfg.method.lam = lam
    cfg.dn.hidden = [5, 5]
    cfg.dn.bias = True
    torch.manual_seed(3)
    m = DifficultyNetMethod(cfg, [50, 20, 5], torch.device("cpu"))
    m.dn.double()
    m.class_acc = torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64)
    return m


def phi_grad(method, model, lr=0.5):
    x, y, xm, ym = batches()
    method.dn.zero_grad()
    objective, _ = method.meta_objective(model, x, y, lr, (xm, ym))
    objective.backward()
    return [p.grad.clone() for p in method.dn.parameters()], objective


def test_full_mode_meta_ce_alone_gives_phi_a_gradient():
    method, model = make_method("full", lam=0.0), tiny_model()
    grads, _ = phi_grad(method, model)
    assert sum(g.abs().sum().item() for g in grads) > 1e-8


def test_full_mode_gradient_matches_finite_differences():
    method, model = make_method("full", lam=0.3), tiny_model()
    grads, _ = phi_grad(method, model)
    x, y, xm, ym = batches()
    eps = 1e-6
    checked = 0
    for p, g in zip(method.dn.parameters(), grads, strict=True):
        flat = p.data.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 4)):
            old = flat[i].item()
            values = []
            for shift in (eps, -eps):
                with torch.no_grad():
                    flat[i] = old + shift
                values.append(method.meta_objective(model, x, y, 0.5, (xm, ym))[0].item())
            with torch.no_grad():
                flat[i] = old
            up, down = values
            fd = (up - down) / (2 * eps)
            assert g.view(-1)[i].item() == pytest.approx(fd, rel=1e-4, abs=1e-9)
            checked += 1
    assert checked >= 12


def test_detached_mode_gradient_is_lambda_times_driver_gradient():
    lam = 0.7
    method, model = make_method("detached", lam=lam), tiny_model()
    grads, _ = phi_grad(method, model)
    method.dn.zero_grad()
    a = method.class_acc
    driver_loss(method.dn(a), driver_target(a, "relative")).backward()
    expected = [lam * p.grad for p in method.dn.parameters()]
    for g, e in zip(grads, expected, strict=True):
        assert torch.allclose(g, e)
    full_grads, _ = phi_grad(make_method("full", lam=lam), tiny_model())
    assert any(not torch.allclose(g, f) for g, f in zip(grads, full_grads, strict=True))


def test_virtual_step_leaves_batchnorm_running_stats_unchanged():
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y, xm, ym = batches()
    w = torch.ones(C, dtype=torch.float64, requires_grad=True)
    meta_loss_reference(model, x, y, w, 0.5, xm, ym, cross_entropy).backward()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert w.grad is not None and w.grad.abs().sum() > 0
    model(x)  # a real train-mode forward does move them: the check above can fail
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])


def test_real_step_uses_weights_from_the_updated_difficulty_net():
    method, model = make_method("full", lam=0.3), tiny_model()
    x, y, xm, ym = batches()
    reference = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    phi_before = [p.clone() for p in method.dn.parameters()]
    method.train_step(model, x, y, opt, 0.5, iter([(xm, ym)]))
    phi_after = list(method.dn.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(phi_before, phi_after, strict=True))
    with torch.no_grad():
        w = class_weights(method.dn(method.class_acc))
    loss = (w[y] * cross_entropy(reference(x), y)).mean()
    ref_opt.zero_grad()
    loss.backward()
    ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q)
