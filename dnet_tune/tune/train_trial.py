"""A trial of N workers (`search --workers-per-trial N`): a Tune function trial that launches a
Ray Train `TorchTrainer` and reports through it.

Ray Train V2's way to tune data-parallel training: the Tune trial only drives (it holds no CPU
or GPU of its own); the TorchTrainer places N workers in one placement group (each with the
trial's --gpus-per-trial/--cpus-per-trial, `PACK` or `SPREAD`), initialises their process group,
and `TuneReportCallback` hands rank 0's per-epoch report to Tune, so ASHA and the Recorder see
what a one-worker trial reports (plus `checkpoint_path`, where rank 0's checkpoint was stored).

Every rank runs `distributed.trainer.DistributedTrainer` (the exact data-parallel step of
`train --workers`); rank 0 writes the epoch's checkpoint, the trainer's own state, as a one-worker
trial does (`trainable.CHECKPOINT_FILE`). Ray Train keeps those checkpoints in the trial's own
folder (`<trial>/train/`), so:
- a worker that dies: the group's run fails, so the trial does, and Tune retries the trial (at
  most --max-failures times, counted as for a one-worker trial); its new TorchTrainer, with the
  same storage folder and name, continues from the group's last checkpoint;
- ASHA stops the trial: Tune ends the trial's actor, which owns the Train controller, which
  owns the workers: the whole group goes. Its placement group would stay (Ray Train's own
  cleaner asks the state API, which needs the dashboard a local search runs without), so
  `GroupCleanup` removes it on the driver: rank 0 names it in every report (`GROUP_KEY`);
- the trial's driver dies, or the search is resumed: Tune starts the function again, and a
  TorchTrainer with the same storage folder and name continues from its last checkpoint.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import train, tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback
from ray.util.placement_group import PlacementGroup

from dnet_tune.tune.confirm_row import fitted_row
from dnet_tune.tune.plan import PLACEMENTS, TRIAL_METRIC, Resources
from dnet_tune.tune.trainable import (
    CHECKPOINT_FILE,
    EARLIER_KEY,
    GROUP_KEY,
    DataHandle,
    TrialSetup,
    diverged_result,
    placement,
    trial_config,
)

TRAIN_DIR = "train"  # the Ray Train run's folder inside the trial's
REPORTS_FILE = "reports.json"  # beside rank 0's checkpoint: the rows it has reported so far


def _cuda_behind(res: Resources) -> bool:
    """Whether a worker with the group's GPU request sees CUDA. Ray Train would pick NCCL for
    any GPU request, but a GPU may be a Ray resource only (a test cluster, a misconfigured
    node), where a one-worker trial falls back to CPU: a group does the same, with gloo."""
    import torch
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    # outside the Tune trial's own placement group (which holds nothing to run it)
    probe = ray.remote(num_cpus=0, num_gpus=res.gpus_per_trial, scheduling_strategy=(
        PlacementGroupSchedulingStrategy(placement_group=None)))(  # type: ignore[arg-type]
        torch.cuda.is_available)
    return bool(ray.get(probe.remote()))


def group_trainer(loop: Any, loop_config: dict[str, Any], res: Resources, storage: str,
                  callbacks: list[Any] | None = None, name: str = TRAIN_DIR) -> TorchTrainer:
    """A TorchTrainer of the search's group shape: N workers with the trial's resources each,
    NCCL where their GPUs are real, else gloo. It never retries by itself (max_failures 0):
    the caller's retries are the only ones, so --max-failures counts each group failure
    once."""
    from ray.train.torch import TorchConfig

    per_worker = {"CPU": res.cpus_per_trial}
    if res.gpus_per_trial > 0:
        per_worker["GPU"] = res.gpus_per_trial
    nccl = res.gpus_per_trial > 0 and _cuda_behind(res)
    return TorchTrainer(
        loop, train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if nccl else "gloo"),
        scaling_config=train.ScalingConfig(
            num_workers=res.workers_per_trial, use_gpu=res.gpus_per_trial > 0,
            resources_per_worker=per_worker,
            placement_strategy=PLACEMENTS[res.placement]),
        run_config=train.RunConfig(
            name=name, storage_path=storage, callbacks=callbacks or [],
            failure_config=train.FailureConfig(max_failures=0),
            checkpoint_config=train.CheckpointConfig(num_to_keep=2)))


def worker_trainer(cfg_dict: dict[str, Any], data: DataHandle) -> Any:
    """This rank's DistributedTrainer on the process group Ray Train initialised."""
    import torch
    from ray.train.torch import get_device

    from dnet_tune.distributed.comm import Comm
    from dnet_tune.distributed.trainer import DistributedTrainer

    cfg = trial_config(cfg_dict, {}, frozenset())
    if cfg.train.device == "cuda":  # each rank on the GPU Ray Train gave it
        torch.cuda.set_device(get_device())
    return DistributedTrainer(cfg, Comm.from_process_group(), data.get())


def _worker_loop(loop: dict[str, Any]) -> None:
    """One rank of a trial: rank 0's report and checkpoint are the trial's.

    Each checkpoint also holds every row rank 0 has reported (`REPORTS_FILE`). Ray Train's
    last checkpoint can be ahead of the driver's last experiment snapshot (a driver killed
    between the two), and the Recorder's rows live in that snapshot: a restarted group's first
    report carries the rows of its checkpoint (`EARLIER_KEY`), so the epochs in between still
    reach trials.parquet and the study. A group restarted after its last epoch reports that
    epoch again, with them.
    """
    import json

    from dnet_tune.train import load_checkpoint, save_checkpoint

    trainer = worker_trainer(loop["config"], loop["data"])
    reported: list[dict[str, Any]] = []
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:  # a restarted group, or a restarted trial: every rank loads it
        with checkpoint.as_directory() as d:
            trainer.load_state_dict(load_checkpoint(str(Path(d) / CHECKPOINT_FILE)))
            if (Path(d) / REPORTS_FILE).is_file():
                reported = json.loads((Path(d) / REPORTS_FILE).read_text())
    earlier = {EARLIER_KEY: json.dumps(reported)} if reported else {}
    where = placement(trainer.device)
    rank0 = trainer.comm.rank == 0
    group = ray.util.get_current_placement_group()
    # this group's placement group, which GroupCleanup removes: never a stored row's old one
    this_group = {GROUP_KEY: group.id.hex()} if rank0 and group is not None else {}
    try:
        for metrics in trainer.fit():
            best = trainer.best["val_acc"] if trainer.best else metrics["val_acc"]
            result = {**metrics, TRIAL_METRIC: best, "diverged": False, **where}
            if rank0:
                reported.append(result)
                result = {**result, **this_group}
                with tempfile.TemporaryDirectory() as d:
                    save_checkpoint(trainer, str(Path(d) / CHECKPOINT_FILE))
                    (Path(d) / REPORTS_FILE).write_text(json.dumps(reported))
                    train.report({**result, **earlier},
                                 checkpoint=train.Checkpoint.from_directory(d))
            else:
                train.report(result)
            earlier = {}  # every rank: the rows went with the first report
    except FloatingPointError as exc:  # every rank sees the same all-reduced loss
        train.report({**diverged_result(trainer.epoch + 1, str(exc)), **where, **this_group,
                      **earlier})
        return
    if earlier:  # restarted after its last epoch: nothing ran, so nothing has been reported
        train.report({**reported[-1], **this_group, **earlier})


class GroupCleanup(tune.Callback):
    """Removes a group trial's placement group once Tune is done with the trial (finished,
    stopped, errored, or paused by a Ctrl-C at the run's end): removing an already removed one
    is harmless, and a trial Tune retries makes a new group."""

    def __init__(self) -> None:
        self.groups: dict[str, str] = {}  # trial id -> its placement group's id (hex)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                        result: dict[str, Any], **info: Any) -> None:
        if result.get(GROUP_KEY):
            self.groups[trial.trial_id] = str(result[GROUP_KEY])

    def _remove(self, trial_id: str) -> None:
        group = self.groups.pop(trial_id, None)
        if group is not None:
            ray.util.remove_placement_group(
                PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group))))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:
        self._remove(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._remove(trial.trial_id)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any,
                         **info: Any) -> None:
        self._remove(trial.trial_id)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial_id in list(self.groups):
            self._remove(trial_id)


def run_group_trial(config: dict[str, Any], data: DataHandle, setup: TrialSetup,
                    res: Resources, exp: str) -> None:
    """The Tune function trial of a multi-worker search: it only drives the group."""
    from dnet_tune.tune import storage
    from dnet_tune.tune.sampling import apply_flat

    resolved = apply_flat(setup.base_for(config), config, setup.virtual)
    folder = storage.join(exp, f"trial_{tune.get_context().get_trial_id()}")
    group_trainer(_worker_loop, {"config": resolved, "data": data}, res, folder,
                  callbacks=[TuneReportCallback()]).fit()


def _confirm_loop(loop: dict[str, Any]) -> None:
    """One rank of a confirmation run. Ray Train's `Result.metrics` keeps only a report that
    came with a checkpoint, so rank 0 attaches one: its row, as JSON."""
    import json

    trainer = worker_trainer(loop["config"], loop["data"])
    row = fitted_row(trainer)
    if trainer.comm.rank != 0:
        train.report(row)
        return
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "row.json").write_text(json.dumps(row))
        train.report(row, checkpoint=train.Checkpoint.from_directory(d))


def confirm_group(data: DataHandle, cfg: dict[str, Any], res: Resources,
                  exp: str) -> dict[str, Any]:
    """One confirmation run on a group of the trials' shape: rank 0's row. Each run is a new
    Ray Train run (a fresh name): a confirmation always trains from scratch."""
    import uuid

    from dnet_tune.tune import storage

    result = group_trainer(_confirm_loop, {"config": cfg, "data": data}, res,
                           storage.join(exp, "confirm_runs"),
                           name=f"run_{uuid.uuid4().hex[:12]}").fit()
    if not result.metrics:
        raise RuntimeError("the confirmation group ended without rank 0's row")
    return dict(result.metrics)
