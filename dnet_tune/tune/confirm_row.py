"""What one confirmation run reports: a module of its own because both ways of running one need
it, the one-process task (`confirm`) and the Ray Train group (`train_trial`), and `confirm`
launches the groups: kept in either, it would tie the two into an import cycle."""

from __future__ import annotations

from typing import Any

from dnet_tune.train import Trainer
from dnet_tune.tune.results import AT_BEST
from dnet_tune.tune.trainable import placement

SELECTED = (*AT_BEST, "test_class_acc")  # the per-class test accuracy too: figure 3 draws it


def fitted_row(trainer: Trainer) -> dict[str, Any]:
    """Train the run to its end; what its confirmation row holds (a group's ranks all return
    the same numbers: everything is all-reduced)."""
    seconds = 0.0
    for metrics in trainer.fit():
        seconds += float(metrics["epoch_time_s"])
    best = trainer.best or {}
    return {**{k: best.get(k) for k in SELECTED}, "selected_epoch": best.get("epoch"),
            "epochs": trainer.epoch, "run_seconds": seconds, **placement(trainer.device)}
