"""The one door to Ray's and Optuna's internals: every private attribute (and undocumented
behaviour) of theirs that the search relies on is read or written here, nowhere else.

Checked against Ray 2.60.x and Optuna 5.x (Ray 2.60.0, Optuna 5.1.0).
tests/tune/test_ray_internals.py exercises every function below on real Ray and Optuna objects,
so an upgrade that moves or renames one of them fails there, by name, rather than deep inside a
search; another test there fails if any other module of the package touches a `_name` of theirs.

Why each is needed is said once, in its function. Behaviours relied on without touching any
attribute are checked where they matter:
- Tune calls a callback's `set_state` on a restore before it re-adds the trials
  (`per_method.SchedulerState`; tests/tune/test_resume.py checks `trials_added_before == 0`);
- Optuna skips a torn last line of a journal file when reading it (`studies.repair_journal`;
  tests/tune/test_studies.py);
- the report places ASHA's rungs where Ray does, and a search calls ASHA inert when there are
  none (`plan.asha_rungs`, computed from the budget; tests/tune/test_report.py compares them
  with Ray's own).

Ray and Optuna are imported inside the functions: importing this module (through `studies`,
which the driver imports at start-up) must load neither.
"""

from __future__ import annotations

import os
import signal
from typing import Any

# ---------------------------------------------------------------------------------- Ray Tune


def temp_dir_option(path: str) -> dict[str, str]:
    """`ray.init` keyword that puts a local Ray's session files under `path` (tests point it at
    a pytest tmp dir); it is private by name (`_temp_dir`), though ray.init documents it."""
    return {"_temp_dir": path}


def restored_callbacks(tuner: Any) -> list[Any]:
    """The callbacks of a restored Tuner: the objects Ray unpickled from the experiment's
    tuner.pkl, which the restored run will call (Tuner has no public getter for its RunConfig;
    `Tuner._local_tuner.get_run_config()`)."""
    return list(tuner._local_tuner.get_run_config().callbacks or [])


def snapshot_files() -> list[tuple[str, str]]:
    """Ray Tune's files of an experiment that `Tuner.restore` loads, as (glob pattern, format):
    tuner.pkl (`tuner_internal._TUNER_PKL`) and, of each family of per-session snapshots, the
    newest by name, as Ray picks it (`CKPT_FILE_TMPL` of the TuneController, SearchGenerator,
    Searcher and Callback classes). Read from Ray itself, so a renamed file moves with it.
    The format is Ray's, not the suffix's: only the experiment state is JSON (with pickled
    values inside); the search generator's `.json` is a cloudpickle (`_load_newest_checkpoint`).
    """
    from ray.tune.callback import CallbackList
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.impl.tuner_internal import _TUNER_PKL
    from ray.tune.search.search_generator import SearchGenerator
    from ray.tune.search.searcher import Searcher

    return [(_TUNER_PKL, "pickle"), (TuneController.CKPT_FILE_TMPL.format("*"), "json")] + [
        (t.format("*"), "pickle") for t in (SearchGenerator.CKPT_FILE_TMPL,
                                            Searcher.CKPT_FILE_TMPL, CallbackList.CKPT_FILE_TMPL)]


def force_experiment_snapshot(controller: Any) -> Any | None:
    """Make Tune save its experiment state at the end of this step, not up to 10 s later, by
    setting the flag Tune sets itself after `num_to_keep` trial checkpoints
    (`TuneController._checkpoint_manager._should_force_sync_up`). Returns the checkpoint
    manager (for `snapshot_syncer`); None without a controller (a scheduler driven by hand).

    Tolerant on purpose, as is `snapshot_syncer`: if an upgrade moved them, a search still runs
    (its tables are then only as fresh as Tune's periodic snapshots) and the door's test names
    what moved.
    """
    manager = getattr(controller, "_checkpoint_manager", None)
    if manager is None or not hasattr(manager, "_should_force_sync_up"):
        return None
    manager._should_force_sync_up = True
    return manager


def snapshot_syncer(manager: Any) -> Any | None:
    """What copies Tune's experiment snapshot to the storage in a background thread (its
    `wait()` blocks until the copy is done): `_ExperimentCheckpointManager._storage.syncer`."""
    return getattr(getattr(manager, "_storage", None), "syncer", None)


def end_tune_run() -> bool:
    """Ask a running `Tuner.fit` to end as its own interrupt does: a last snapshot, then cleanup.

    Tune handles SIGUSR1 like a Ctrl-C during fit (undocumented: only SIGINT is), and SIGINT
    is ours during a search. Sent only while a handler is installed (both only exist in the
    main thread); the default action would kill the driver. True if it was sent.
    """
    if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
        return False
    os.kill(os.getpid(), signal.SIGUSR1)
    return True


def set_scheduler_metric(scheduler: Any, metric: str | None) -> None:
    """Set what `TrialScheduler.metric` returns (a read-only property over `_metric`; Tune's
    result check reads it) on a scheduler that passes its search properties on to others."""
    scheduler._metric = metric


# ------------------------------------------------------------------------ ASHA's rung records
# Ray saves neither a scheduler nor its rungs (ray#30838); per_method carries them itself.


def _is_asha(scheduler: Any) -> bool:
    from ray.tune.schedulers import AsyncHyperBandScheduler

    return isinstance(scheduler, AsyncHyperBandScheduler)


def asha_rungs(scheduler: Any) -> list[list[tuple[Any, dict[str, float]]]]:
    """Per bracket, its rungs as (milestone, {trial id: metric}), copied; none without ASHA
    (`AsyncHyperBandScheduler._brackets`, `_Bracket._rungs`)."""
    if not _is_asha(scheduler):
        return []
    return [[(milestone, dict(recorded)) for milestone, recorded in bracket._rungs]
            for bracket in scheduler._brackets]


def asha_stopped(scheduler: Any) -> int:
    """How many trials ASHA has stopped (`_num_stopped`: its debug string's count); 0 without
    ASHA."""
    return int(scheduler._num_stopped) if _is_asha(scheduler) else 0


def set_asha_rungs(scheduler: Any, rungs: list[list[tuple[Any, dict[str, float]]]],
                   stopped: int) -> None:
    """Put rung records back (what `asha_rungs`/`asha_stopped` read). The caller checks that
    the milestones agree: this writes what it is given, one list of rungs per bracket."""
    for bracket, saved in zip(scheduler._brackets, rungs, strict=True):
        bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in saved]
    scheduler._num_stopped = stopped


def asha_trials_added(scheduler: Any) -> int:
    """How many trials ASHA knows (`_trial_info`: each added trial's bracket); 0 without ASHA.
    A resume checks it is still 0 when the rungs are put back."""
    return len(scheduler._trial_info) if _is_asha(scheduler) else 0


# ------------------------------------------------------------------ Ray's OptunaSearch, Optuna


def optuna_study(searcher: Any) -> Any | None:
    """The Optuna study an OptunaSearch asks and tells (`_ot_study`; None until it has a
    space)."""
    return searcher._ot_study


def optuna_trials(searcher: Any) -> dict[str, Any]:
    """Ray trial id -> the live Optuna trial an OptunaSearch proposed for it (`_ot_trials`)."""
    trials: dict[str, Any] = searcher._ot_trials
    return trials


def told_trials(searcher: Any) -> set[str]:
    """The Ray trial ids whose result an OptunaSearch has told its study (`_completed_trials`);
    adding one makes it ignore that trial's (replayed) end."""
    told: set[str] = searcher._completed_trials
    return told


def study_storage(study: Any) -> Any:
    """An Optuna study's storage (`Study._storage`): the trial-level calls it offers (user
    attributes by storage id) have no public equivalent on a FrozenTrial."""
    return study._storage


def storage_trial_id(trial: Any) -> int:
    """An Optuna trial's id in its storage (`_trial_id` of a Trial or FrozenTrial), which is not
    its per-study `number`."""
    return int(trial._trial_id)


def rebind_storage(searcher: Any, storage: Any) -> None:
    """Point an unpickled OptunaSearch, its study and its live trials at `storage`: each holds
    its own reference (`OptunaSearch._storage`, `Study._storage`, `Trial.storage`)."""
    study = searcher._ot_study
    study._storage = searcher._storage = storage
    for trial in searcher._ot_trials.values():
        trial.storage = storage


def sampler_settings(sampler: Any) -> dict[str, Any]:
    """The class of an Optuna sampler and, for a TPESampler, the settings it was built with
    (`_n_startup_trials`, `_n_ei_candidates`, `_multivariate`, `_group`, `_constant_liar`: it
    has no getters). A resumed search reads them off the samplers Ray restored, to record that
    they are the ones it started with (`samplers.in_use`)."""
    out: dict[str, Any] = {"class": type(sampler).__name__}
    if hasattr(sampler, "_constant_liar"):
        out.update(n_startup_trials=sampler._n_startup_trials,
                   n_ei_candidates=sampler._n_ei_candidates,
                   multivariate=sampler._multivariate, group=sampler._group,
                   constant_liar=sampler._constant_liar)
    return out


def distribution_contains(dist: Any, value: Any) -> bool:
    """Whether an Optuna distribution holds `value` (its range, step, log scale or choices):
    `BaseDistribution._contains` of the internal representation; False for a value of the
    wrong kind."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False
