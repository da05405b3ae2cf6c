"""The Ray Tune function trainable: the core training loop, reported and checkpointed per epoch.

Nothing here trains: it builds the trial's config, hands it to `dnet_tune.train.Trainer`,
and turns each epoch into `tune.report(metrics, checkpoint=...)`. Resuming (after a node
failure or a restored experiment) reloads the trainer's own checkpoint, whose epoch counter and
RNG states make the continuation exact; ASHA reads our `epoch`, not Tune's
`training_iteration`, because the latter restarts from 1 after a restore.

A config whose training loss becomes non-finite has *diverged*: that is an answer about the
config, not a failure of the trial, so it ends cleanly with one last report whose `val_acc` is
0.0. A NaN there would be worse: ASHA never stops a NaN trial (`NaN < cutoff` is False) and
Optuna refuses a NaN final value; 0.0 is the worst finite value, so both learn from it.

What ASHA and Optuna judge a trial by is `plan.TRIAL_METRIC`, its best val so far, reported
beside each epoch's own val_acc: the trainer's selection survives a restore in its checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import result as ray_result
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

from dnet_tune.config import Config, config_from_dict
from dnet_tune.data.base import LTDataset
from dnet_tune.train import Trainer, load_checkpoint, save_checkpoint
from dnet_tune.tune.plan import TRIAL_METRIC
from dnet_tune.tune.sampling import METHOD_KEY, apply_flat

CHECKPOINT_FILE = "checkpoint.pt"
# What Ray adds to every result a trial reports; everything else is ours (the trainer's epoch and
# `placement`), which the Recorder keeps as trials.parquet's rows and the TensorBoard callback
# draws. Ray's automatic keys include "hostname" (the Tune trial's host: for a group trial, the
# driving actor's, not rank 0's), so placement names where an epoch trained "host".
# A multi-worker trial's results also carry where Ray Train stored rank 0's checkpoint and which
# placement group holds its workers (tune/train_trial.py): bookkeeping, not epoch metrics.
GROUP_KEY = "train_group"
# The first report of a group restarted from Ray Train's checkpoint carries every row rank 0 had
# reported up to that checkpoint (JSON), so the driver can fill the epochs its own last snapshot
# missed (tune/train_trial.py).
EARLIER_KEY = "earlier_epochs"
RAY_KEYS = frozenset(ray_result.AUTO_RESULT_KEYS) | {
    ray_result.DONE, ray_result.TRIAL_ID, ray_result.EXPERIMENT_TAG,
    ray_result.SHOULD_CHECKPOINT, ray_result.RESULT_DUPLICATE, ray_result.TRIAL_INFO,
    CHECKPOINT_PATH_KEY, GROUP_KEY, EARLIER_KEY,
}


def epoch_row(result: dict[str, Any]) -> dict[str, Any]:
    """A result without Ray's keys: a metric the trainer gains reaches trials.parquet without a
    list to update."""
    return {k: v for k, v in result.items() if k not in RAY_KEYS}


def earlier_rows(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The rows a restarted group's first report carries (`EARLIER_KEY`), by epoch."""
    text = result.get(EARLIER_KEY)
    return {int(r["epoch"]): epoch_row(r) for r in json.loads(text)} if text else {}


@dataclass(frozen=True)
class DataHandle:
    """A reference to the one object-store copy of the dataset, shared by every trial."""

    ref: Any  # ray.ObjectRef[LTDataset]

    def get(self) -> LTDataset:
        dataset: LTDataset = ray.get(self.ref)
        return dataset


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares: each method's resolved base config and which sampled names are
    structural."""

    bases: dict[str, dict[str, Any]]  # method name -> its base config
    virtual: frozenset[str]

    def base_for(self, flat: dict[str, Any]) -> dict[str, Any]:
        """The base config of a trial's own method (its flat config names the method)."""
        return self.bases[flat[METHOD_KEY]]


def placement(device: Any) -> dict[str, Any]:
    """Where a run trained, recorded with every epoch (multi-node searches are audited by it),
    and with how many intra-op threads (the Trainer set its config's `train.threads`)."""
    import torch

    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "host": os.uname().nodename, "device": str(device),
            "threads": torch.get_num_threads()}


def device_for_ray_worker() -> str:
    """CUDA only when Ray assigned this worker a GPU and CUDA is really there.

    A trial that asked for no GPU must not grab one that happens to be visible on its node, and
    a "GPU" that is only a Ray resource (a test cluster, a misconfigured node) means CPU.
    """
    import torch

    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def trial_config(base: dict[str, Any], flat: dict[str, Any], virtual: frozenset[str]) -> Config:
    cfg = config_from_dict(apply_flat(base, flat, virtual))
    if cfg.train.device == "auto":
        cfg = replace(cfg, train=replace(cfg.train, device=device_for_ray_worker()))
    return cfg


def diverged_result(epoch: int, reason: str) -> dict[str, Any]:
    """The last report of a diverged trial: the worst finite val_acc, flagged, with the reason."""
    return {"epoch": epoch, "val_acc": 0.0, TRIAL_METRIC: 0.0, "diverged": True,
            "divergence": reason}


def run_trial(config: dict[str, Any], data: DataHandle, setup: TrialSetup) -> None:
    trainer = Trainer(trial_config(setup.base_for(config), config, setup.virtual), data.get())
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            trainer.load_state_dict(load_checkpoint(str(Path(d) / CHECKPOINT_FILE)))
    where = placement(trainer.device)
    try:
        for metrics in trainer.fit():
            with tempfile.TemporaryDirectory() as d:
                save_checkpoint(trainer, str(Path(d) / CHECKPOINT_FILE))
                best = trainer.best["val_acc"] if trainer.best else metrics["val_acc"]
                tune.report({**metrics, TRIAL_METRIC: best, "diverged": False, **where},
                            checkpoint=tune.Checkpoint.from_directory(d))
    except FloatingPointError as exc:  # train.Trainer: the loss became NaN or infinite
        tune.report({**diverged_result(trainer.epoch + 1, str(exc)), **where})
