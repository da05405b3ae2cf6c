"""The GPU paths: JVP meta-gradient, bf16, channels_last and `deterministic: auto` on CUDA.

Skipped without a CUDA device (CI has none); run them on a GPU machine with
`pytest tests/method/test_cuda.py`.
"""

import math

import pytest
import torch
from test_meta_jvp import TOL, conv_bn_net, data, make_method, rel_err

from dnet_tune.run import resolve_config
from dnet_tune.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("base_loss", ["ce", "balanced_softmax"])
def test_phi_gradient_matches_the_reference_on_cuda(no_tf32, dtype, base_loss):
    grads = {}
    for impl in ("reference", "jvp"):
        model = conv_bn_net(dtype).to(CUDA)
        method = make_method(dtype, impl, base_loss=base_loss)
        method.device = CUDA
        method.dn.to(CUDA)
        method.class_acc = method.class_acc.to(CUDA)
        method.log_prior = method.log_prior.to(CUDA)
        x, y, xm, ym = (t.to(CUDA) for t in data(dtype))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        method.meta_objective(model, x, y, 0.3, (xm, ym))[0].backward()
        grads[impl] = [p.grad.clone() for p in method.dn.parameters()]
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert sum(float(g.abs().sum()) for g in grads["reference"]) > 1e-6
    assert rel_err(grads["jvp"], grads["reference"]) < TOL[dtype]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_difficulty_net_trains_on_cuda(precision):
    cfg = resolve_config(dataset="digits_lt", overrides={
        "method": {"name": "difficulty_net"},
        "train": {"epochs": 3, "device": "cuda", "precision": precision}})
    try:
        trainer = Trainer(cfg)
        assert torch.backends.cudnn.benchmark  # deterministic: auto is off on CUDA
        assert not torch.are_deterministic_algorithms_enabled()
        conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        history = list(trainer.fit())
    finally:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    assert all(math.isfinite(m["train_loss"]) for m in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert trainer.best is not None and trainer.best["val_acc"] > 0.3
