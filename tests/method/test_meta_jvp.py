"""The per-class JVP meta-gradient against the double-backward reference (spec §4)."""


import pytest
import torch
from torch import nn

from dnet_tune.config import Config
from dnet_tune.method.losses import cross_entropy
from dnet_tune.method.meta_step import meta_grad_jvp, meta_loss_reference
from dnet_tune.method.methods import DifficultyNetMethod

C = 4
COUNTS = [40, 20, 8, 3]
TOL = {torch.float32: 1e-5, torch.float64: 1e-9}


def conv_bn_net(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, C),
    )
    return net.to(dtype).train()


def data(dtype: torch.dtype, seed: int = 1):
    """A train batch with unequal class counts (one class absent) and a meta batch."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(10, 2, 5, 5, generator=g).to(dtype)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 0])
    xm = torch.randn(8, 2, 5, 5, generator=g).to(dtype)
    ym = torch.arange(8) % C
    return x, y, xm, ym


def make_method(dtype, impl="jvp", *, base_loss="ce", input_mode="relative", interval=1,
                lam=0.3):
    cfg = Config()
    cfg.method.meta_impl = impl
    cfg.method.base_loss = base_loss
    cfg.method.meta_interval = interval
    cfg.method.lam = lam
    cfg.dn.hidden = [6, 6]
    cfg.dn.bias = True
    cfg.dn.input_mode = input_mode
    cfg.dn.lr = 1e-2
    torch.manual_seed(3)
    m = DifficultyNetMethod(cfg, COUNTS, torch.device("cpu"))
    m.dn.to(dtype)
    m.class_acc = torch.tensor([0.9, 0.6, 0.3, 0.1], dtype=dtype)
    return m


def rel_err(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    va = torch.cat([t.detach().reshape(-1) for t in a])
    vb = torch.cat([t.detach().reshape(-1) for t in b])
    return float((va - vb).norm() / vb.norm())


def phi_grad(method, model):
    x, y, xm, ym = data(next(model.parameters()).dtype)
    method.dn.zero_grad()
    objective, _ = method.meta_objective(model, x, y, 0.3, (xm, ym))
    objective.backward()
    return [p.grad.clone() for p in method.dn.parameters()], objective.detach()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("base_loss", ["ce", "balanced_softmax"])
@pytest.mark.parametrize("input_mode", ["relative", "absolute"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_phi_gradient_matches_the_double_backward_reference(dtype, base_loss, input_mode, mode):
    model = conv_bn_net(dtype)
    with torch.no_grad():  # eval mode must read non-trivial running statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    model.train(mode == "train")
    kw = {"base_loss": base_loss, "input_mode": input_mode}
    ref, ref_obj = phi_grad(make_method(dtype, "reference", **kw), model)
    jvp, jvp_obj = phi_grad(make_method(dtype, "jvp", **kw), model)
    assert sum(float(g.abs().sum()) for g in ref) > 1e-6  # a real gradient, not 0 == 0
    assert rel_err(jvp, ref) < TOL[dtype]
    assert float(jvp_obj) == pytest.approx(float(ref_obj), rel=TOL[dtype])


def test_dce_dw_matches_reference_and_is_zero_for_an_absent_class():
    model = conv_bn_net(torch.float64)
    x, y, xm, ym = data(torch.float64)
    w = torch.tensor([0.5, 1.5, 1.2, 0.8], dtype=torch.float64, requires_grad=True)
    meta_loss_reference(model, x, y, w, 0.3, xm, ym, cross_entropy).backward()
    dce_dw, _ = meta_grad_jvp(model, x, y, w, 0.3, xm, ym, cross_entropy)
    assert torch.allclose(dce_dw, w.grad, rtol=1e-9, atol=1e-12)
    assert dce_dw[3] == 0 and w.grad[3] == 0  # class 3 has no sample in the batch
    assert (dce_dw[:3] != 0).all()


def test_meta_step_leaves_batchnorm_buffers_untouched():
    model = conv_bn_net(torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method = make_method(torch.float32, "jvp")
    x, y, xm, ym = data(torch.float32)
    method.meta_objective(model, x, y, 0.3, (xm, ym))[0].backward()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model(x)  # a real train-mode forward does move them: the check above can fail
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])


def _train(impl, dtype, interval, steps, **kw):
    model = conv_bn_net(dtype)
    method = make_method(dtype, impl, interval=interval, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-3)
    losses = []
    for s in range(steps):
        x, y, xm, ym = data(dtype, seed=10 + s)
        losses.append(method.train_step(model, x, y, opt, 0.3, iter([(xm, ym)])))
    return model, method, losses


@pytest.mark.parametrize("interval,steps", [(1, 3), (3, 7)])
@pytest.mark.parametrize("base_loss", ["ce", "balanced_softmax"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_steps_match_the_reference(interval, steps, base_loss, dtype):
    tol = TOL[dtype]
    ref_model, ref_method, ref_losses = _train("reference", dtype, interval, steps,
                                               base_loss=base_loss)
    model, method, losses = _train("jvp", dtype, interval, steps, base_loss=base_loss)
    phi0 = list(make_method(dtype).dn.parameters())
    ref_phi = list(ref_method.dn.parameters())
    assert rel_err(ref_phi, phi0) > 1e-4  # φ moved: the comparison below means something
    assert rel_err(list(method.dn.parameters()), ref_phi) < tol
    assert rel_err(list(model.parameters()), list(ref_model.parameters())) < tol
    for (name, buf), ref_buf in zip(model.named_buffers(), ref_model.buffers(), strict=True):
        if name.endswith("num_batches_tracked"):  # one real BN update per step, no more
            assert int(buf) == int(ref_buf) == steps
        else:
            assert rel_err([buf], [ref_buf]) < tol, name
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in losses)
    assert torch.allclose(torch.stack(losses), torch.stack(ref_losses), rtol=tol)


def test_jvp_path_builds_no_second_order_graph(monkeypatch):
    calls: list[bool] = []
    real_grad = torch.autograd.grad

    def spy(*args, **kwargs):
        calls.append(bool(kwargs.get("create_graph", False)))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy)
    _train("jvp", torch.float32, 1, 1)
    assert calls and not any(calls)
    calls.clear()
    _train("reference", torch.float32, 1, 1)
    assert any(calls)  # the spy does see the reference's create_graph
