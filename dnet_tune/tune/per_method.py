"""Several methods in one Tuner, each with its own TPE study and its own ASHA rungs.

The methods share the cluster (their trials interleave, so none waits for another to finish) but
never each other's statistics: a Difficulty-Net trial is compared by ASHA only with Difficulty-Net
trials at the same rung, so cheap baselines that look good early cannot stop it (or the other way
round), and each method's TPE models only its own trials. Every method gets exactly the same
number of trials.

Both also carry what a resumed or interrupted search needs: the searcher tags each Optuna trial
with its Ray trial id and reconciles the studies when Ray restores it (`studies.reconcile`);
the scheduler's ASHA rung records can be read out and put back (Ray does not save a scheduler:
`resume.SchedulerState` carries them in the experiment snapshot); after a Ctrl-C
(`interrupt.requested`) no trial is proposed or started and running ones pause at their next
epoch.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Mapping
from typing import Any

from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from dnet_tune.tune import ray_internals
from dnet_tune.tune.faults import interrupt, studies
from dnet_tune.tune.sampling import METHOD_KEY
from dnet_tune.tune.trainable import earlier_rows

STAGE2_PREFIX = "stage2."  # the sampled names a trial uses only once its stage 2 runs


class PerMethodSearcher(Searcher):
    """Round-robin over one sub-searcher per method, `quota` trials each."""

    # the studies' storage where the experiment is now: set by the driver before a restore
    # (`save` leaves it out: a storage handle does not travel in Ray's snapshot)
    rebind_to: Any = None

    def __init__(self, searchers: Mapping[str, Searcher], quota: int, metric: str,
                 mode: str, stage1_epochs: int | None = None,
                 trial_epochs: int | None = None) -> None:
        super().__init__(metric=metric, mode=mode)
        self.searchers = dict(searchers)
        self.quota = quota
        self.stage1_epochs = stage1_epochs  # None: the trials have no stage 2
        # a whole trial's epochs: a healthy trial that ends before them was stopped by ASHA
        # (None: not known, every ended trial is told COMPLETE as Ray's OptunaSearch does)
        self.trial_epochs = trial_epochs
        self.suggested = dict.fromkeys(searchers, 0)
        self.owner: dict[str, str] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if interrupt.requested():
            return None  # stopping: no new trial (the quota stays for a resume)
        # the method with the fewest trials so far goes next: the methods interleave
        order = sorted((self.suggested[m], i, m) for i, m in enumerate(self.searchers))
        for _, _, method in order:
            if self.suggested[method] >= self.quota:
                continue
            config = self.searchers[method].suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                continue
            self.suggested[method] += 1
            self.owner[trial_id] = method
            studies.tag(self.searchers[method], trial_id)
            return {**config, METHOD_KEY: method}
        if all(n >= self.quota for n in self.suggested.values()):
            return Searcher.FINISHED  # type: ignore[return-value]  # Ray's sentinel string
        return None

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Each epoch's value goes to the trial's study as an intermediate value, step = the
        trainer's epoch (Ray's OptunaSearch would report Tune's `training_iteration`, which
        restarts after a restore)."""
        if trial_id not in self.owner:
            return
        searcher = self.searchers[self.owner[trial_id]]
        # a restarted group's epochs that the driver's last snapshot missed (runner.Recorder)
        for epoch, row in earlier_rows(result).items():
            studies.report_epoch(searcher, trial_id, row.get(self.metric), epoch)
        studies.report_epoch(searcher, trial_id, result.get(self.metric), result.get("epoch"))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        """The study's record of a trial says how it ended (README, "How a trial ends in its
        study"): ran every epoch → COMPLETE with its best val; stopped by ASHA → PRUNED (its
        value: its best val up to the stop, Optuna's last intermediate value); diverged →
        COMPLETE with 0.0; errored → FAIL.

        The epoch a trial ends at never reached `on_trial_result` (Tune withholds a result on
        which the scheduler stops the trial, and ASHA stops every trial at max_t), so it is
        reported here first.

        Stage-2 parameters are judged only by trials that ran stage 2. ASHA's rungs mostly lie
        in stage 1 (the grace period is at most stage 1's length), and a trial stopped there,
        or one that diverges there, never uses the stage-2 values it was given. Its study
        record then keeps only its stage-1 parameters (`studies.tell_without`, PRUNED or
        COMPLETE as above), whose value still teaches TPE about them. Chosen over tuning stage
        2 separately from the top trials' stage-1 checkpoints: one Tuner, one budget and one
        resume path, and every trial that ASHA lets finish does run stage 2 with its own
        values.
        """
        if trial_id not in self.owner:
            return
        searcher = self.searchers[self.owner[trial_id]]
        value = result.get(self.metric) if result else None
        if error or value is None or studies.told(searcher, trial_id):
            searcher.on_trial_complete(trial_id, result, error)  # FAIL; or already told
            return
        assert result is not None
        epoch = result.get("epoch")
        studies.report_epoch(searcher, trial_id, value, epoch)
        trial_epochs = getattr(self, "trial_epochs", None)  # a snapshot from before it existed
        stopped = (trial_epochs is not None and epoch is not None and int(epoch) < trial_epochs
                   and not result.get("diverged"))
        stage1 = getattr(self, "stage1_epochs", None)
        if (stage1 is not None and epoch is not None and int(epoch) <= stage1
                and studies.tell_without(searcher, trial_id, value, STAGE2_PREFIX,
                                         pruned=stopped)):
            return
        if stopped:
            studies.tell_pruned(searcher, trial_id)
            return
        searcher.on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({k: v for k, v in self.__dict__.items() if k != "rebind_to"}, f)

    def restore(self, checkpoint_path: str) -> None:
        """Ray's searcher snapshot, then the studies made to agree with their storage (the
        driver sets `rebind_to`, the experiment's journal where it is now, before fitting)."""
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        studies.rebind(self.searchers, self.rebind_to)
        self.reconciled = studies.reconcile(self.searchers)


class PerMethodScheduler(FIFOScheduler):
    """One scheduler (ASHA, or FIFO with --scheduler none) per method; trials run first-come
    first-served across methods."""

    def __init__(self, make: Callable[[], TrialScheduler], methods: list[str]) -> None:
        super().__init__()
        self.schedulers: dict[str, Any] = {m: make() for m in methods}
        self.restored: dict[str, int] | None = None  # what a resume put back (search.json)
        self._snapshots: Any = None  # Tune's experiment checkpoint manager, once a trial ended

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_snapshots": None}

    def snapshot_soon(self, controller: Any) -> None:
        """Make Tune save its experiment state at the end of this step, not up to 10 s later.

        Called when a trial ends. With `wait_for_snapshot` before each write of the live
        tables (at the end of the step), the tables never call a trial ended that Tune's saved
        state still has running, so a resume after a driver kill never re-runs the tail of a
        trial the tables already showed as ended (`ray_internals.force_experiment_snapshot`).
        """
        manager = ray_internals.force_experiment_snapshot(controller)
        if manager is not None:
            self._snapshots = manager

    def wait_for_snapshot(self) -> None:
        """Wait until Tune's last experiment snapshot is in the storage (it is copied there in
        a background thread), so nothing written after it can be ahead of it."""
        syncer = ray_internals.snapshot_syncer(self._snapshots)
        if syncer is not None:
            with contextlib.suppress(Exception):  # a failed copy is Tune's to report
                syncer.wait()

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        ray_internals.set_scheduler_metric(self, metric)
        return all(s.set_search_properties(metric, mode, **spec)
                   for s in self.schedulers.values())

    def _of(self, trial: Any) -> TrialScheduler:
        return self.schedulers[trial.config[METHOD_KEY]]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)
        self.snapshot_soon(tune_controller)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        decision: str = self._of(trial).on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.CONTINUE and interrupt.requested():
            # Tune registers the checkpoint that came with this epoch, then stops the actor;
            # the trial stays unfinished, so a resume continues it from here
            return TrialScheduler.PAUSE
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any,
                          result: dict[str, Any]) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)
        self.snapshot_soon(tune_controller)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        if interrupt.requested():
            return None  # stopping: paused and pending trials wait for a resume
        return super().choose_trial_to_run(tune_controller)

    def rung_records(self) -> dict[str, Any]:
        """Each method's ASHA rungs (milestone -> {trial id: metric}) and stop count (none and
        0 without ASHA)."""
        return {m: {"rungs": ray_internals.asha_rungs(s),
                    "num_stopped": ray_internals.asha_stopped(s)}
                for m, s in self.schedulers.items()}

    def restore_rung_records(self, state: dict[str, Any]) -> None:
        """Put saved rung records back; records which trials had already been re-added."""
        added = sum(ray_internals.asha_trials_added(s) for s in self.schedulers.values())
        for method, saved in state.items():
            asha = self.schedulers[method]
            if not isinstance(asha, AsyncHyperBandScheduler):  # --scheduler none: no rungs
                continue
            for now, rungs in zip(ray_internals.asha_rungs(asha), saved["rungs"], strict=True):
                if [m for m, _ in now] != [m for m, _ in rungs]:
                    raise ValueError(f"{method}: saved ASHA milestones {[m for m, _ in rungs]}"
                                     f" differ from {[m for m, _ in now]}")
            ray_internals.set_asha_rungs(asha, saved["rungs"], saved["num_stopped"])
        self.restored = {"rung_records": sum(len(r) for s in state.values()
                                             for b in s["rungs"] for _, r in b),
                         "trials_added_before": added}

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{m}: {s.debug_string()}" for m, s in self.schedulers.items())


class SchedulerState(tune.Callback):
    """Carries the per-method ASHA rung records in Tune's experiment snapshot.

    Ray saves a searcher and callbacks with each snapshot but not the scheduler (ray#30838): a
    restored run would get ASHA back with empty rungs, which stop nobody. Callback state is
    saved atomically with every snapshot and, on a restore, put back before Tune re-adds the
    trials (`TuneController.resume`); `PerMethodScheduler.restored` records that order. This
    callback and the scheduler are pickled together into tuner.pkl, so after a restore
    `self.scheduler` is the very scheduler the restored run uses.
    """

    def __init__(self, scheduler: PerMethodScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any] | None:
        return {"asha": self.scheduler.rung_records()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.restore_rung_records(state["asha"])
