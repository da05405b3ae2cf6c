"""Runs the Tuner: per method, Optuna TPE proposes and ASHA stops; a callback records epochs.

Three steps the driver calls in order: `build_tuner` (trainable, per-method searchers and
schedulers, storage), `fit_quietly` (Ray's own console output replaced by our view), then
`collect` (the callback's records, as `TrialRecord`s).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from dnet_tune.tune import ray_internals, samplers, storage
from dnet_tune.tune.faults.interrupt import StopAtEpochBoundary
from dnet_tune.tune.faults.live_results import LiveTables
from dnet_tune.tune.faults.studies import study_name
from dnet_tune.tune.per_method import (
    PerMethodScheduler,
    PerMethodSearcher,
    SchedulerState,
)
from dnet_tune.tune.plan import TRIAL_METRIC, Budget, Resources, run_epochs, stage1_epochs
from dnet_tune.tune.results import TrialRecord, record_status
from dnet_tune.tune.sampling import METHOD_KEY, apply_flat, define_by_run
from dnet_tune.tune.space import SearchSpace
from dnet_tune.tune.tensorboard_events import TensorBoardCallback
from dnet_tune.tune.train_trial import GroupCleanup, run_group_trial
from dnet_tune.tune.trainable import DataHandle, TrialSetup, earlier_rows, epoch_row, run_trial
from dnet_tune.tune.view import SearchView


def _epochs_text(epochs: list[int]) -> str:
    epochs = sorted(epochs)
    if len(epochs) == 1:
        return f"epoch {epochs[0]}"
    if epochs == list(range(epochs[0], epochs[-1] + 1)):
        return f"epochs {epochs[0]}-{epochs[-1]}"
    return "epochs " + ", ".join(map(str, epochs))


class Recorder(tune.Callback):
    """Collects each trial's reported epochs on the driver and feeds the live view.

    Its records are callback state: Tune saves them with every experiment snapshot, so after a
    driver kill a resume starts from the records that match Tune's own trial states.
    """

    def __init__(self, setup: TrialSetup, view: SearchView | None,
                 scheduler: PerMethodScheduler | None = None,
                 searcher: PerMethodSearcher | None = None) -> None:
        self.trial_setup = setup
        self.view = view
        # pickled with it into tuner.pkl: after a restore, the very objects the run uses
        self.scheduler = scheduler
        self.searcher = searcher
        self.exp: str | None = None  # where the live tables go (set by the driver, not pickled)
        self.records: dict[str, TrialRecord] = {}
        self.running: set[str] = set()
        self.peak_running = 0  # how many trials Tune ran at once: the packing actually achieved

    def __getstate__(self) -> dict[str, Any]:
        # The Tuner pickles its callbacks into tuner.pkl; the live view (locks, a terminal)
        # stays on this driver, and the records travel as callback state (get_state).
        return {"trial_setup": self.trial_setup, "scheduler": self.scheduler,
                "searcher": self.searcher}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["trial_setup"], None, state.get("scheduler"),  # type: ignore[misc]
                      state.get("searcher"))

    def get_state(self) -> dict[str, Any] | None:
        return {"records": [vars(r) for r in self.records.values()],
                "peak_running": self.peak_running}

    def set_state(self, state: dict[str, Any]) -> None:
        """On a restore (before Tune re-adds the trials): the records of Tune's snapshot."""
        self.records = {r["trial_id"]: TrialRecord(**r) for r in state["records"]}
        self.peak_running = int(state.get("peak_running", 0))
        if self.view is not None:
            ended = {r.trial_id: self.status(r) for r in self.records.values() if r.done}
            self.view.preload(ended)
            self.view.note(f"resuming: {len(ended)} of {self.view.trials} trials had ended; "
                           f"{len(self.records) - len(ended)} continue from their checkpoints")

    def status(self, rec: TrialRecord) -> str:
        return record_status(rec, run_epochs(self.trial_setup.bases[rec.method]))

    def _record(self, trial: Any) -> TrialRecord:
        rec = self.records.get(trial.trial_id)
        if rec is None:
            flat = dict(trial.config)
            rec = TrialRecord(trial.trial_id, flat[METHOD_KEY], flat,
                              apply_flat(self.trial_setup.base_for(flat), flat,
                                         self.trial_setup.virtual),
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
        # A trial retried after its worker died (or resumed after the driver died) continues
        # from its last registered checkpoint, which may be an epoch behind its last report:
        # the replayed epoch replaces the first (the same numbers: the checkpoint restores the
        # RNG), so the table keeps one row per epoch, in order.
        rows = {r["epoch"]: r for r in rec.rows}
        filled = [e for e, r in earlier_rows(result).items() if rows.setdefault(e, r) is r]
        if filled and self.view is not None:
            self.view.note(f"trial {trial.trial_id}: {_epochs_text(filled)} recorded from its "
                           f"group's checkpoint (the driver had stopped before saving them)")
        rows[row["epoch"]] = row
        rec.rows = [rows[e] for e in sorted(rows)]
        if row.get("diverged"):
            rec.diverged = True
            rec.error = str(row.get("divergence", "training diverged"))
        if self.view is not None:
            self.view.result(trial.trial_id, row)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any,
                         **info: Any) -> None:
        if self.view is not None:
            self.view.note(f"trial {trial.trial_id} lost its worker; retrying from its last "
                           f"checkpoint (failure {trial.num_failures})")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:
        self.running.discard(trial.trial_id)
        rec = self._record(trial)
        rec.done = True
        if self.view is not None:
            self.view.done(trial.trial_id, self.status(rec))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        rec = self._record(trial)
        rec.errored = rec.done = True
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


@dataclass(kw_only=True)
class TunerSpec:
    """Everything a Tuner is built from (and a restored one checked against)."""

    space: SearchSpace
    methods: list[str]
    seed: int
    budget: Budget
    bases: dict[str, dict[str, Any]]  # each method's base config
    epochs: int  # every trial's length (max_epochs + stage 2's), the same for every method
    resources: Resources
    name: str
    storage: str
    reuse_actors: bool = True
    max_failures: int = 3
    optuna_storage: Any = None  # an Optuna storage; None: in memory (Ray's searcher snapshot)
    # per method, configs (Optuna names -> values) TPE evaluates first (--warm-start)
    warm_start: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sampler: str = "tpe"  # plan.SAMPLERS
    # every keyword argument of the sampler (`samplers.settings`, as search.json records it);
    # None: resolved here from the choice, the budget and the slots
    sampler_settings: dict[str, Any] | None = None
    scheduler: str = "asha"  # plan.SCHEDULERS


@dataclass
class TunerRun:
    """What `build_tuner` / `restore_tuner` made and `collect` reads back."""

    tuner: Any
    recorder: Recorder
    data: DataHandle
    scheduler: PerMethodScheduler | None = None


def _prepare(spec: TunerSpec, data: DataHandle) -> tuple[Any, TrialSetup]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ray's newer console output prints its own banner even at verbose 0; the classic reporter
    # at verbose 0 is silent, and our view replaces it.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    virtual = frozenset(n for m in spec.methods for n in spec.space.virtual_names(m))
    setup = TrialSetup(spec.bases, virtual)
    res = spec.resources
    if res.workers_per_trial > 1:
        # the trial only drives its Ray Train group, which reserves the workers' resources;
        # Tune refuses an empty request, so it holds one byte of memory
        group = tune.with_parameters(run_group_trial, data=data, setup=setup, res=res,
                                     exp=storage.join(spec.storage, spec.name))
        return tune.with_resources(group, {"memory": 1}), setup
    resources = {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, setup=setup),
                                    resources)
    return trainable, setup


def sampler_settings(spec: TunerSpec) -> dict[str, Any]:
    """The sampler's keyword arguments: the spec's own, else resolved from its choice."""
    if spec.sampler_settings is not None:
        return spec.sampler_settings
    return samplers.settings(spec.sampler, spec.seed, spec.budget.trials, spec.resources.slots,
                             len(spec.methods))


def _sampler(spec: TunerSpec) -> Any:
    return samplers.build(spec.sampler, sampler_settings(spec))


def _scheduler(spec: TunerSpec) -> TrialScheduler:
    """One method's scheduler: ASHA on epochs, or none (FIFO: every trial runs to the end)."""
    if spec.scheduler == "none":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="epoch", max_t=spec.epochs,
                         grace_period=spec.budget.grace_period,
                         reduction_factor=spec.budget.reduction_factor)


def build_tuner(spec: TunerSpec, data: DataHandle, view: SearchView, exp: str) -> TunerRun:
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    trainable, setup = _prepare(spec, data)
    space, methods, budget, res = spec.space, spec.methods, spec.budget, spec.resources
    searchers = {m: OptunaSearch(space=define_by_run(space, m), metric=TRIAL_METRIC, mode="max",
                                 sampler=_sampler(spec),
                                 storage=spec.optuna_storage,
                                 study_name=study_name(spec.name, m),
                                 points_to_evaluate=spec.warm_start.get(m) or None)
                 for m in methods}
    searcher = PerMethodSearcher(searchers, budget.trials, metric=TRIAL_METRIC, mode="max",
                                 stage1_epochs=stage1_epochs(spec.bases[methods[0]]),
                                 trial_epochs=spec.epochs)
    scheduler = PerMethodScheduler(lambda: _scheduler(spec), methods)
    recorder = Recorder(setup, view, scheduler, searcher)
    recorder.exp = exp
    callbacks = [recorder, SchedulerState(scheduler), LiveTables(recorder, spec.epochs),
                 StopAtEpochBoundary(), TensorBoardCallback()]
    if res.workers_per_trial > 1:
        callbacks.append(GroupCleanup())
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=TRIAL_METRIC, mode="max", num_samples=budget.trials * len(methods),
            scheduler=scheduler,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=res.slots),
            # a finished trial's worker takes the next trial: no new process, no second
            # `import torch` (~3.5 s) per trial; every trial still seeds itself from its config
            # (never for a group's trial: its actor owns the group, and ending the actor is
            # what ends the group when ASHA stops the trial)
            reuse_actors=spec.reuse_actors and res.workers_per_trial == 1,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=spec.storage, verbose=0, callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # a trial whose worker dies (kill, OOM, spot preemption) goes back to PENDING and
            # resumes from its last checkpoint, at most this many times
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        ),
    )
    return TunerRun(tuner, recorder, data, scheduler)


def restore_tuner(spec: TunerSpec, data: DataHandle, view: SearchView, exp: str) -> TunerRun:
    """The experiment's own Tuner, continued: finished trials stay finished, unfinished ones
    (running, pending, paused by a Ctrl-C) resume from their last checkpoints.

    Errored trials are not retried: each already used its --max-failures retries, and its
    study has it as FAIL. The searcher, the callbacks' state (our records, the ASHA rungs) and
    the trial states all come from Tune's last snapshot, so they agree with each other.
    """
    trainable, setup = _prepare(spec, data)
    tuner = tune.Tuner.restore(exp, trainable=trainable, resume_unfinished=True,
                               resume_errored=False)
    # the Recorder unpickled with the experiment is the one the restored run will call; it
    # resolves trial configs as the new trainable does (both from the stored request)
    (recorder,) = [c for c in ray_internals.restored_callbacks(tuner) if isinstance(c, Recorder)]
    recorder.trial_setup = setup
    recorder.view = view
    recorder.exp = exp
    if recorder.searcher is not None:  # used when Tune restores the searcher's snapshot
        recorder.searcher.rebind_to = spec.optuna_storage
    return TunerRun(tuner, recorder, data, recorder.scheduler)


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
