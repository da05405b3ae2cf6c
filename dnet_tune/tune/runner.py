"""Runs the Tuner: per method, Optuna TPE proposes and ASHA stops; a callback records epochs.

Three steps the driver calls in order: `build_tuner` (trainable, per-method searchers and
schedulers, storage), `fit_quietly` (Ray's own console output replaced by our view), then
`collect` (the callback's records, as `TrialRecord`s).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import result as ray_result

from dnet_tune.tune.per_method import METHOD_KEY, PerMethodScheduler, PerMethodSearcher
from dnet_tune.tune.plan import Budget, Resources
from dnet_tune.tune.results import TrialRecord, trial_status
from dnet_tune.tune.sampling import apply_flat, define_by_run
from dnet_tune.tune.space import SearchSpace
from dnet_tune.tune.tensorboard_events import TensorBoardCallback
from dnet_tune.tune.trainable import DataHandle, TrialSetup, run_trial
from dnet_tune.tune.view import SearchView

# What Ray adds to every reported result; everything else is the trainer's own metrics (plus
# where it ran), so a metric the trainer gains reaches trials.parquet without a list to update.
RAY_KEYS = frozenset(ray_result.AUTO_RESULT_KEYS) | {
    ray_result.DONE, ray_result.TRIAL_ID, ray_result.EXPERIMENT_TAG,
    ray_result.SHOULD_CHECKPOINT, ray_result.RESULT_DUPLICATE, ray_result.TRIAL_INFO,
} - {"hostname"}  # ours: placement() reports it with node_id and device


def epoch_row(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in RAY_KEYS}


class Recorder(tune.Callback):
    """Collects each trial's reported epochs on the driver and feeds the live view."""

    def __init__(self, setup: TrialSetup, view: SearchView | None) -> None:
        self.trial_setup = setup
        self.view = view
        self.records: dict[str, TrialRecord] = {}
        self.running: set[str] = set()
        self.peak_running = 0  # how many trials Tune ran at once: the packing actually achieved

    def __getstate__(self) -> dict[str, Any]:
        # The Tuner pickles its callbacks into the experiment state; the live view (locks, a
        # terminal) stays on this driver.
        return {"trial_setup": self.trial_setup}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["trial_setup"], None)  # type: ignore[misc]

    def _record(self, trial: Any) -> TrialRecord:
        rec = self.records.get(trial.trial_id)
        if rec is None:
            flat = dict(trial.config)
            rec = TrialRecord(trial.trial_id, flat[METHOD_KEY], flat,
                              apply_flat(self.trial_setup.base, flat, self.trial_setup.virtual),
                              index=len(self.records))
            self.records[trial.trial_id] = rec
        return rec

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._record(trial)
        self.running.add(trial.trial_id)
        self.peak_running = max(self.peak_running, len(self.running))

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                        result: dict[str, Any], **info: Any) -> None:
        rec = self._record(trial)
        row = epoch_row(result)
        # a restored trial re-reports nothing twice, but keep the table one row per epoch
        rec.rows = [r for r in rec.rows if r["epoch"] != row["epoch"]] + [row]
        if self.view is not None:
            self.view.result(trial.trial_id, row)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:
        self.running.discard(trial.trial_id)
        rec = self._record(trial)
        last = rec.rows[-1]["epoch"] if rec.rows else 0
        if self.view is not None:
            max_epochs = self.trial_setup.base["train"]["epochs"]
            self.view.done(trial.trial_id, trial_status(last, max_epochs))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        rec = self._record(trial)
        rec.errored = True
        rec.error = _last_error_line(trial)
        if self.view is not None:
            self.view.error(trial.trial_id, f"{rec.error} (details: {trial.path}/error.txt)")


def _last_error_line(trial: Any) -> str:
    """The exception line of the trial's traceback: Ray writes it locally before the callback;
    the copy in (possibly remote) storage only appears after the next sync."""
    path = trial.error_file
    try:
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()] if path else []
    except OSError:
        lines = []
    return lines[-1].strip() if lines else "unknown error (see the trial's error.txt)"


def trial_dirname(trial: Any) -> str:
    """Short trial directories (Ray's default name holds every sampled value)."""
    return f"trial_{trial.trial_id}"


@dataclass
class TunerRun:
    """What `build_tuner` made and `collect` reads back."""

    tuner: Any
    recorder: Recorder
    data: DataHandle


def build_tuner(space: SearchSpace, methods: list[str], seed: int, budget: Budget,
                base: dict[str, Any], data: DataHandle, res: Resources, name: str,
                storage: str, reuse_actors: bool, view: SearchView) -> TunerRun:
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ray's newer console output prints its own banner even at verbose 0; the classic reporter
    # at verbose 0 is silent, and our view replaces it.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    virtual = frozenset(n for m in methods for n in space.virtual_names(m))
    setup = TrialSetup(base, virtual)
    resources = {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, setup=setup),
                                    resources)
    searchers = {m: OptunaSearch(space=define_by_run(space, m), metric="val_acc", mode="max",
                                 sampler=optuna.samplers.TPESampler(seed=seed))
                 for m in methods}
    searcher = PerMethodSearcher(searchers, budget.trials, metric="val_acc", mode="max")
    scheduler = PerMethodScheduler(
        lambda: ASHAScheduler(time_attr="epoch", max_t=budget.max_epochs,
                              grace_period=budget.grace_period,
                              reduction_factor=budget.reduction_factor), methods)
    recorder = Recorder(setup, view)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric="val_acc", mode="max", num_samples=budget.trials * len(methods),
            scheduler=scheduler,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=res.slots),
            # a finished trial's worker takes the next trial: no new process, no second
            # `import torch` (~3.5 s) per trial; every trial still seeds itself from its config
            reuse_actors=reuse_actors,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0,
            callbacks=[recorder, TensorBoardCallback()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    return TunerRun(tuner, recorder, data)


def fit_quietly(run: TunerRun, view: SearchView) -> None:
    """Fit with our view instead of Ray's console output and per-failure tracebacks."""
    # Trial errors still reach the view, one line each with the path of the trial's error.txt.
    tune_log = logging.getLogger("ray.tune")
    level = tune_log.level
    tune_log.setLevel(logging.CRITICAL)
    try:
        with view:
            run.tuner.fit()
    finally:
        tune_log.setLevel(level)


def collect(run: TunerRun) -> list[TrialRecord]:
    return sorted(run.recorder.records.values(), key=lambda r: r.index)
