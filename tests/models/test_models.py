"""Registry-driven checks of every backbone: each test is parametrized over `MODELS.names()`, so a
newly registered model is exercised without editing this file."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp

from dnet_tune.config import ModelConfig
from dnet_tune.errors import UserError
from dnet_tune.models import MODELS, create_model, list_models
from dnet_tune.models.resnet_cifar import ShortcutA
from dnet_tune.models.resnet_imagenet import CosineClassifier

NAMES = MODELS.names()
NUM_CLASSES = 5
IN_CHANNELS = 3


def _size(name: str) -> int:
    return int(MODELS.entry(name).info.get("smoke_size", 32))


def _build(name: str, **cfg_kwargs: float) -> nn.Module:
    cfg = ModelConfig(name=name, **cfg_kwargs)
    return create_model(cfg, NUM_CLASSES, IN_CHANNELS, _size(name))


def _batch(name: str, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    s = _size(name)
    x = torch.randn(n, IN_CHANNELS, s, s, generator=g)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return x, y


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_buffers()}


def test_expected_models_registered() -> None:
    assert {"small_cnn", "resnet20", "resnet32", "resnet10", "resnet50", "resnet152"} <= set(NAMES)
    listed = list_models()
    assert [n for n, _ in listed] == NAMES
    assert all(desc for _, desc in listed)


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(UserError) as exc:
        create_model(ModelConfig(name="resnet9000"), 10, 3, 32)
    msg = str(exc.value)
    assert "resnet9000" in msg
    for name in NAMES:
        assert name in msg


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_classifier(name: str) -> None:
    model = _build(name)
    x, _ = _batch(name)
    out = model(x)
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()
    head = model.classifier
    assert isinstance(head, nn.Module)
    feats = model.forward_features(x)  # type: ignore[operator]
    assert feats.shape == (2, model.feature_dim)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(head(model.forward_features(x)), model(x))  # type: ignore[operator]


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_finite_grads_to_all_params(name: str) -> None:
    model = _build(name)
    x, y = _batch(name)
    F.cross_entropy(model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", NAMES)
def test_train_mode_updates_running_stats_eval_does_not(name: str) -> None:
    model = _build(name)
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    x, _ = _batch(name)
    before = _bn_buffers(model)
    model.eval()
    with torch.no_grad():
        model(x)
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), k
    model.train()
    with torch.no_grad():
        model(x)
    changed = [k for k, v in model.named_buffers() if not torch.equal(v, before[k])]
    assert any(k.endswith("running_mean") for k in changed)
    assert any(k.endswith("num_batches_tracked") for k in changed)


@pytest.mark.parametrize("name", NAMES)
def test_functional_call_with_cloned_buffers_keeps_real_stats(name: str) -> None:
    model = _build(name)
    x, y = _batch(name)
    real = _bn_buffers(model)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    buffers = _bn_buffers(model)
    out = functional_call(model, {**params, **buffers}, (x,))
    F.cross_entropy(out, y).backward()
    for k, v in model.named_buffers():
        assert torch.equal(v, real[k]), f"real buffer {k} changed"
    assert any(not torch.equal(buffers[k], real[k]) for k in buffers), "clones were not updated"
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())
    assert all(p.grad is None for p in model.parameters())
    # Same parameters and same batch: the substituted call computes what the module computes.
    with torch.no_grad():
        torch.testing.assert_close(out.detach(), model(x))


# torch's forward-AD batch-norm rule scripts a helper on first use; that deprecation is torch's own.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", NAMES)
def test_forward_mode_jvp_through_functional_call(name: str) -> None:
    """The fast meta-gradient is a JVP of per-class losses w.r.t. θ; every backbone must allow it
    and match the reverse-mode directional derivative."""
    model = _build(name)
    x, y = _batch(name, n=4)
    params = {k: v.detach() for k, v in model.named_parameters()}
    g = torch.Generator().manual_seed(2)
    tangents = {k: torch.randn(v.shape, generator=g) for k, v in params.items()}

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        out = functional_call(model, {**p, **_bn_buffers(model)}, (x,))
        return F.cross_entropy(out, y)

    directional = jvp(loss, (params,), (tangents,))[1]
    p_req = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    grads = torch.autograd.grad(loss(p_req), list(p_req.values()))
    expected = sum((gr * tangents[k]).sum() for gr, k in zip(grads, p_req, strict=True))
    torch.testing.assert_close(directional, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_init(name: str) -> None:
    torch.manual_seed(123)
    a = _build(name).state_dict()
    torch.manual_seed(123)
    b = _build(name).state_dict()
    torch.manual_seed(124)
    c = _build(name).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    ("name", "lo", "hi"), [("resnet32", 0.45e6, 0.48e6), ("resnet20", 0.26e6, 0.28e6)]
)
def test_cifar_resnet_param_count(name: str, lo: float, hi: float) -> None:
    model = create_model(ModelConfig(name=name), 10, 3, 32)
    n = sum(p.numel() for p in model.parameters())
    assert lo <= n <= hi, n
    assert isinstance(model.classifier, nn.Linear)


def test_shortcut_a_is_parameter_free_subsample_and_zero_pad() -> None:
    sc = ShortcutA(16, 32, 2)
    assert not list(sc.parameters())
    x = torch.randn(2, 16, 8, 8)
    out = sc(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_cosine_classifier_bounded_by_scale() -> None:
    head = CosineClassifier(16, 7, scale=4.0)
    x = torch.randn(64, 16) * 100
    logits = head(x)
    assert logits.abs().max() <= 4.0 + 1e-5
    assert not any(n == "bias" for n, _ in head.named_parameters())
    # Aligning a feature with a class weight hits the bound exactly.
    torch.testing.assert_close(head(head.weight[2:3].detach() * 3)[0, 2], torch.tensor(4.0))


@pytest.mark.parametrize("name", ["resnet10", "resnet50", "resnet152"])
def test_imagenet_models_use_cosine_head_with_cfg_scale(name: str) -> None:
    model = _build(name, cosine_scale=2.5)
    assert isinstance(model.classifier, CosineClassifier)
    assert model.classifier.scale == 2.5
    x, _ = _batch(name)
    assert model(x).abs().max() <= 2.5 + 1e-5


def test_small_cnn_digits_input() -> None:
    model = create_model(ModelConfig(name="small_cnn"), 10, 1, 8)
    out = model(torch.randn(64, 1, 8, 8))
    assert out.shape == (64, 10)
    assert isinstance(model.classifier, nn.Linear)
