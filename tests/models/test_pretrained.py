"""`model.pretrained`: a saved state dict loads into the backbone, the classifier always starts
fresh (and the log says so once), `model.reinit` keeps named blocks fresh, and a wrong file is one
error line naming the file. The loading logic is checked on small registered models; ResNet-152
is checked against torchvision's own network, whose ImageNet weights it is meant to take."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from dnet_tune.config import ModelConfig
from dnet_tune.errors import UserError
from dnet_tune.models import create_model

LOGGER = "dnet_tune.models.pretrained"


def _stats(model: nn.Module, seed: int) -> nn.Module:
    """Non-default BatchNorm statistics and affine values, so a load that skips them shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def _saved(tmp_path, name: str = "small_cnn", classes: int = 10, channels: int = 3,
           size: int = 8, file: str = "weights.pt") -> tuple[str, dict[str, torch.Tensor]]:
    torch.manual_seed(7)
    model = _stats(create_model(ModelConfig(name=name), classes, channels, size), 1)
    state = model.state_dict()
    path = tmp_path / file
    torch.save(state, path)
    return str(path), state


def _build(path: str, classes: int = 5, name: str = "small_cnn", size: int = 8,
           reinit: list[str] | None = None) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, pretrained=path, reinit=reinit or [])
    return create_model(cfg, classes, 3, size)


def test_a_saved_state_dict_loads_and_the_classifier_starts_fresh(tmp_path, caplog):
    path, state = _saved(tmp_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        model = _build(path, classes=5)
    for k, v in model.state_dict().items():
        if k.startswith("classifier."):
            assert v.shape[0] == 5, k  # the run's class count, not the file's
        else:
            assert torch.equal(v, state[k]), k
    notes = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(notes) == 1, notes  # said once
    assert path in notes[0] and "'classifier' (5 classes; the file's classifier has 10" in notes[0]
    # the same class count still gets a fresh head: a pretrained head predicts other classes
    same = _build(path, classes=10)
    assert not torch.equal(same.classifier.weight, state["classifier.weight"])
    fresh = create_model(ModelConfig(name="small_cnn"), 10, 3, 8)
    assert not torch.equal(fresh.features[0].weight, state["features.0.weight"])


def test_reinit_keeps_the_named_modules_fresh(tmp_path, caplog):
    path, state = _saved(tmp_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        model = _build(path, reinit=["features.3"])
    own = model.state_dict()
    assert torch.equal(own["features.0.weight"], state["features.0.weight"])
    assert torch.equal(own["features.4.running_mean"], state["features.4.running_mean"])
    assert not torch.equal(own["features.3.weight"], state["features.3.weight"])
    assert "features.3 (model.reinit)" in caplog.records[-1].getMessage()


def _file(tmp_path, kind: str) -> str:
    path = tmp_path / f"{kind}.pt"
    _, state = _saved(tmp_path, file="base.pt")
    if kind == "text":
        path.write_text("not weights\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[:4000])
    elif kind == "list":
        torch.save([1, 2], path)
    elif kind == "checkpoint":
        torch.save({"model": state, "epoch": 3}, path)
    elif kind == "missing_key":
        torch.save({k: v for k, v in state.items() if k != "features.0.weight"}, path)
    elif kind == "extra_key":
        torch.save({**state, "extra.weight": torch.zeros(2)}, path)
    elif kind == "shape":
        return _saved(tmp_path, channels=1, file=path.name)[0]
    elif kind == "architecture":
        return _saved(tmp_path, name="resnet20", size=32, file=path.name)[0]
    return str(path)


@pytest.mark.parametrize(("kind", "needle"), [
    ("text", "is not a PyTorch state-dict file"),
    ("empty", "is not a PyTorch state-dict file"),
    ("truncated", "is not a PyTorch state-dict file"),
    ("list", "holds a list, not a state dict"),
    ("checkpoint", "looks like a training checkpoint"),
    ("missing_key", "lacks 1 of its tensors (features.0.weight)"),
    ("extra_key", "has 1 it does not (extra.weight)"),
    ("shape", "'features.0.weight' has shape [32, 1, 3, 3] in the file, [32, 3, 3, 3]"),
    ("architecture", "does not fit model 'small_cnn'"),
])
def test_a_wrong_file_is_one_line_naming_the_file(tmp_path, kind, needle):
    path = _file(tmp_path, kind)
    with pytest.raises(UserError) as exc:
        _build(path)
    msg = str(exc.value)
    assert needle in msg and f"model.pretrained '{path}'" in msg
    assert "\n" not in msg


def test_a_missing_file_and_an_unknown_reinit_are_one_line(tmp_path):
    with pytest.raises(UserError, match=r"model\.pretrained '.*nothing\.pt' does not exist"):
        _build(str(tmp_path / "nothing.pt"))
    path, _ = _saved(tmp_path)
    with pytest.raises(UserError, match=r"model\.reinit 'layer4\.2' names no module of model "
                                         r"'small_cnn' \(its top-level modules: features, "
                                         r"classifier\)"):
        _build(path, reinit=["layer4.2"])


def test_train_refuses_a_bad_file_before_writing_anything(cli, one_line_error, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not weights\n")
    out = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "digits_lt", "--epochs", "1", "--set",
                       f"model.pretrained={bad}", "--output", out, "--quiet")
    one_line_error(code, err, f"model.pretrained '{bad}' is not a PyTorch state-dict file")
    assert not out.exists()


def test_a_training_run_starts_from_the_file(tmp_path):
    from dnet_tune.run import resolve_config
    from dnet_tune.train import Trainer

    path, state = _saved(tmp_path, channels=1)  # digits: 1 channel, 10 classes
    cfg = resolve_config(dataset="digits_lt", sets=[f"model.pretrained={path}"])
    trainer = Trainer(cfg)
    assert torch.equal(trainer.model.features[0].weight, state["features.0.weight"])


# ------------------------------------------------------------------ ResNet-152 and torchvision


def test_resnet152_takes_torchvision_s_weights_and_computes_its_features(tmp_path, caplog):
    """torchvision's own ResNet-152 (random weights, nothing downloaded) saved as its ImageNet
    file would be: every tensor but its 1000-class fc loads, and the features are torchvision's."""
    import torchvision

    torch.manual_seed(3)
    reference = _stats(torchvision.models.resnet152(weights=None), 2).eval()
    path = tmp_path / "resnet152.pth"
    torch.save(reference.state_dict(), path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        model = _build(str(path), classes=365, name="resnet152", size=32).eval()
    note = caplog.records[-1].getMessage()
    assert "loaded 930 of resnet152's 931 tensors" in note
    assert "'fc' (365 classes; the file's fc has 1000 classes and is not used)" in note
    reference.fc = nn.Identity()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), reference(x), rtol=0, atol=0)
        assert model(x).shape == (2, 365)
    del model
    # the Places recipe's choice: layer4.2 retrained from scratch, the rest from the file
    fresh = _build(str(path), classes=365, name="resnet152", size=32, reinit=["layer4.2"])
    saved = reference.state_dict()
    own = fresh.state_dict()
    assert torch.equal(own["layer4.1.conv3.weight"], saved["layer4.1.conv3.weight"])
    assert not torch.equal(own["layer4.2.conv1.weight"], saved["layer4.2.conv1.weight"])
    assert torch.equal(own["layer4.2.bn1.running_mean"], torch.zeros(512))


def test_resnet152_refuses_a_resnet50_file_naming_both_depths(tmp_path):
    import torchvision

    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(UserError, match=r"is a ResNet with \[3, 4, 6, 3\] blocks per stage, "
                                        r"model 'resnet152' has \[3, 8, 36, 3\]"):
        _build(str(path), classes=365, name="resnet152", size=32)
