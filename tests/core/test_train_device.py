"""Device-related training behaviour on CPU: loss kept on the device, precision, memory format,
determinism and the test-evaluation schedule."""

import math

import pytest
import torch
from torch import nn

from dnet_tune import train as train_module
from dnet_tune.device import channels_last, resolve_deterministic
from dnet_tune.run import resolve_config
from dnet_tune.train import Trainer


def digits(method: str, epochs: int, **sets: object):
    items = [f"{k}={v}" for k, v in sets.items()]
    return resolve_config(dataset="digits_lt", sets=items,
                          overrides={"method": {"name": method}, "train": {"epochs": epochs}})


def _record_steps(trainer, monkeypatch, poison_from: int | None = None):
    """Wrap the method's train_step: record (loss, batch size); optionally return NaN."""
    seen: list[tuple[torch.Tensor, int]] = []
    real = trainer.method.train_step

    def step(model, x, y, *args):
        loss = real(model, x, y, *args)
        assert isinstance(loss, torch.Tensor) and loss.device == trainer.device
        if poison_from is not None and len(seen) + 1 >= poison_from:
            loss = torch.full_like(loss, float("nan"))
        seen.append((loss, len(y)))
        return loss

    monkeypatch.setattr(trainer.method, "train_step", step)
    return seen


@pytest.mark.parametrize("method", ["ce", "difficulty_net"])
def test_train_loss_is_the_sample_mean_of_the_step_losses(monkeypatch, method):
    trainer = Trainer(digits(method, 1))
    seen = _record_steps(trainer, monkeypatch)
    metrics = trainer.run_epoch()
    expected = sum(float(loss) * n for loss, n in seen) / sum(n for _, n in seen)
    assert len(seen) > 1
    assert metrics["train_loss"] == pytest.approx(expected, rel=1e-12)


def test_a_non_finite_loss_fails_within_the_check_interval(monkeypatch):
    trainer = Trainer(digits("ce", 1))
    monkeypatch.setattr(train_module, "FINITE_CHECK_EVERY", 2)
    seen = _record_steps(trainer, monkeypatch, poison_from=3)
    steps_per_epoch = len(trainer.train_batches)
    assert steps_per_epoch > 4
    with pytest.raises(FloatingPointError, match="training loss became nan at epoch 1"):
        trainer.run_epoch()
    assert len(seen) == 4  # checked at step 4, not only at the end of the epoch


def test_a_diverging_run_still_raises_floating_point_error():
    trainer = Trainer(digits("ce", 1, **{"optim.lr": 1e8}))
    with pytest.raises(FloatingPointError, match="training loss became"):
        trainer.run_epoch()


@pytest.mark.parametrize("method", ["ce", "difficulty_net"])
def test_bf16_run_trains_under_autocast(method):
    trainer = Trainer(digits(method, 3, **{"train.precision": "bf16"}))
    dtypes: set[torch.dtype] = set()
    trainer.model.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
    history = list(trainer.fit())
    assert torch.bfloat16 in dtypes  # the real forward did run in bf16
    # the meta step's classifier forwards stay fp32 (see DifficultyNetMethod's docstring)
    assert (torch.float32 in dtypes) == (method == "difficulty_net")
    assert all(math.isfinite(m["train_loss"]) for m in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert trainer.best is not None and trainer.best["val_acc"] > 0.3


def test_channels_last_converts_only_on_cuda_and_only_4d():
    x = torch.randn(2, 3, 4, 4)
    assert channels_last(x, torch.device("cpu")) is x
    conv = nn.Conv2d(3, 4, 3)
    assert channels_last(conv, "cpu") is conv and conv.weight.is_contiguous()
    # the conversion itself is device-independent, so a "cuda" device name checks it on CPU
    y = channels_last(x, "cuda")
    assert y.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(
        memory_format=torch.channels_last)
    assert torch.equal(x, y)
    v = torch.randn(2, 3)
    assert channels_last(v, "cuda") is v
    channels_last(conv, "cuda")
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_cpu_trainer_keeps_batches_contiguous_and_deterministic():
    trainer = Trainer(digits("ce", 1))
    x, _ = next(iter(trainer.train_batches.epoch(None)))
    assert next(iter(trainer._to_memory_format(iter([(x, None)]))))[0] is x
    assert torch.are_deterministic_algorithms_enabled()


def test_deterministic_auto_is_on_for_cpu_off_for_cuda():
    assert resolve_deterministic("auto", torch.device("cpu")) is True
    assert resolve_deterministic("auto", torch.device("cuda")) is False
    assert resolve_deterministic(True, torch.device("cuda")) is True
    assert resolve_deterministic(False, torch.device("cpu")) is False


def test_deterministic_false_turns_deterministic_algorithms_off_and_true_back_on():
    try:
        Trainer(digits("ce", 1, **{"train.deterministic": "false"}))
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark
        Trainer(digits("ce", 1, **{"train.deterministic": "auto"}))
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


VAL_SEQUENCE = [0.5, 0.7, 0.6, 0.7, 0.8]  # improves at epochs 1, 2 and 5 only


def _scripted_val(trainer, monkeypatch):
    """val accuracy follows VAL_SEQUENCE; test is real and its evaluations are counted."""
    real = trainer.class_accuracy
    test_epochs: list[int] = []

    def class_accuracy(split):
        if split == "val":
            return torch.full((trainer.num_classes,), VAL_SEQUENCE[trainer.epoch - 1])
        if split == "test":
            test_epochs.append(trainer.epoch)
        return real(split)

    monkeypatch.setattr(trainer, "class_accuracy", class_accuracy)
    return test_epochs


@pytest.mark.parametrize("mode,evaluated", [("every_epoch", [1, 2, 3, 4, 5]),
                                            ("on_improvement", [1, 2, 5])])
def test_test_split_is_evaluated_every_epoch_or_on_val_improvement(monkeypatch, mode, evaluated):
    trainer = Trainer(digits("ce", len(VAL_SEQUENCE), **{"train.test_eval": mode}))
    test_epochs = _scripted_val(trainer, monkeypatch)
    history = list(trainer.fit())
    assert test_epochs == evaluated
    for m in history:
        finite = [math.isfinite(m[k]) for k in ("test_acc", "test_many", "test_medium",
                                                 "test_few")]
        assert all(finite) if m["epoch"] in evaluated else not any(finite)
        per_class = m["test_class_acc"]
        assert (len(per_class) == trainer.num_classes if m["epoch"] in evaluated
                else per_class is None)
    assert trainer.best is not None and trainer.best["epoch"] == 5
    assert math.isfinite(trainer.best["test_acc"])


def test_on_improvement_changes_nothing_but_the_test_columns():
    every = list(Trainer(digits("ce", 3)).fit())
    lazy = list(Trainer(digits("ce", 3, **{"train.test_eval": "on_improvement"})).fit())
    for a, b in zip(every, lazy, strict=True):
        for k, v in a.items():
            if k == "epoch_time_s" or (k.startswith("test_") and (b[k] is None or b[k] != b[k])):
                continue
            assert b[k] == v, k
