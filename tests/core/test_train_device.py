"""Device-related training behaviour on CPU: the loss kept on the device."""


import pytest
import torch

from dnet_tune import train as train_module
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
