"""Runs the Tuner: Optuna TPE proposes, ASHA stops, a callback records every epoch.

A `ce` baseline with the same epochs and resources runs beside the trials when the search tunes
Difficulty-Net, so the final table shows what the tuning bought.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import ray
from ray import tune
from rich.console import Console

from dnet_tune.data.base import LTDataset
from dnet_tune.tune import results
from dnet_tune.tune.results import BASELINE_ROLE, SEARCH_ROLE, TrialRecord
from dnet_tune.tune.search import Resources, SearchOutcome, SearchRequest
from dnet_tune.tune.space import SearchSpace, apply_flat
from dnet_tune.tune.trainable import DataHandle, TrialSetup, run_trial, trial_config
from dnet_tune.tune.view import SearchView, top_table


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
            rec = TrialRecord(trial.trial_id, SEARCH_ROLE, flat,
                              apply_flat(self.trial_setup.base, flat, self.trial_setup.virtual))
            self.records[trial.trial_id] = rec
        return rec

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self.peak_running = max(self.peak_running, len(self.running))

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                        result: dict[str, Any], **info: Any) -> None:
        rec = self._record(trial)
        row = {k: result[k] for k in results.METRIC_KEYS if k in result}
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
            self.view.done(trial.trial_id, results.trial_status(last, max_epochs))

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


def _baseline(data: DataHandle, cfg_dict: dict[str, Any]) -> list[dict[str, Any]]:
    from dnet_tune.train import Trainer

    trainer = Trainer(trial_config(cfg_dict, {}, frozenset()), data.get())
    ctx = ray.get_runtime_context()
    where = {"node_id": ctx.get_node_id(), "hostname": os.uname().nodename,
             "device": str(trainer.device)}
    return [{**m, **where} for m in trainer.fit()]


def execute(req: SearchRequest, space: SearchSpace, budget: dict[str, Any],
            base: dict[str, Any], dataset: LTDataset, res: Resources, name: str, exp: str,
            console: Console) -> SearchOutcome:
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ray's newer console output prints its own banner even at verbose 0; the classic reporter
    # at verbose 0 is silent, and our view replaces it. Trial errors still reach the view.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    data = DataHandle(ray.put(dataset))  # the one object-store copy every trial reads
    setup = TrialSetup(base, frozenset(space.virtual_names(req.method)))
    resources = {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, setup=setup),
                                    resources)
    searcher = OptunaSearch(space=space.define_by_run(req.method), metric="val_acc", mode="max",
                            sampler=optuna.samplers.TPESampler(seed=req.seed))
    scheduler = ASHAScheduler(time_attr="epoch", max_t=budget["max_epochs"],
                              grace_period=budget["grace_period"],
                              reduction_factor=budget["reduction_factor"])
    view = SearchView(console, f"{name}: {req.dataset} · {req.method}", budget["trials"])
    recorder = Recorder(setup, view)
    storage = req.storage if results.is_uri(req.storage) else os.path.abspath(req.storage)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric="val_acc", mode="max", num_samples=budget["trials"], scheduler=scheduler,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=res.slots),
            # a finished trial's worker takes the next trial: no new process, no second
            # `import torch` (~3.5 s) per trial; every trial still seeds itself from its config
            reuse_actors=req.reuse_actors,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0, callbacks=[recorder],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    baseline_ref = None
    baseline_cfg: dict[str, Any] | None = None
    if req.baseline and req.method == "difficulty_net":
        from dnet_tune.config import merge

        baseline_cfg = merge(base, {"method": {"name": "ce"}})
        task = ray.remote(_baseline).options(num_cpus=res.cpus_per_trial,
                                             num_gpus=res.gpus_per_trial)
        baseline_ref = task.remote(data, baseline_cfg)
    # Ray logs each trial failure as a full traceback; the view prints one line per failure
    # with the path of the trial's error.txt instead.
    tune_log = logging.getLogger("ray.tune")
    level = tune_log.level
    tune_log.setLevel(logging.CRITICAL)
    try:
        with view:
            tuner.fit()
    finally:
        tune_log.setLevel(level)
    records = list(recorder.records.values())
    if baseline_ref is not None and baseline_cfg is not None:
        rec = TrialRecord("baseline-ce", BASELINE_ROLE, {"method.name": "ce"}, baseline_cfg)
        try:
            rec.rows = ray.get(baseline_ref)
        except ray.exceptions.RayError as exc:
            rec.errored, rec.error = True, str(exc).strip().splitlines()[-1]
            console.print(f"[red]baseline ce failed:[/] {rec.error}")
        records.append(rec)
    meta = {"experiment": name, "dataset": req.dataset, "method": req.method,
            "space": space.path, "budget": budget, "seed": req.seed,
            "resources": vars(res), "peak_running_trials": recorder.peak_running,
            "storage": req.storage,
            "versions": results.versions(), "git_sha": results.git_sha()}
    summary, best = results.write_experiment(exp, records, budget["max_epochs"], meta)
    if any(r["best_val_acc"] is not None for r in summary):
        console.print(top_table(summary))
    if best is not None:
        console.print(f"best: trial {best['trial_id']} val_acc {100 * best['best_val_acc']:.2f}% "
                      f"at epoch {best['best_epoch']} → {results.join(exp, 'best_config.yaml')}")
    return SearchOutcome(exp, summary, best)
