"""Where each method's Optuna study lives, and how a resumed search makes it agree with Ray.

Default: one Optuna journal file in the experiment folder, `<experiment>/optuna.journal`
(Optuna's JournalStorage with a JournalFileBackend), one study per method named
`<experiment>:<method>`. Why a journal file rather than SQLite:
- concurrent writers: only the search driver writes, so neither needs more; but the journal's
  lock works on NFS (a link/rename lock), where SQLite's POSIX locks are known to be unreliable
  and can corrupt the database, and the cluster setups here put experiments on shared
  filesystems (`file:///mnt/...`);
- kill -9: every journal record is appended and fsync'd; a driver killed mid-append leaves at
  most one torn last line, which `repair_journal` cuts off before a resume (SQLite would roll
  back on its own; the journal needs this one step);
- no database server and no extra dependency; `optuna-dashboard` reads both kinds;
- object storage (s3://, gs://) holds neither: there the studies stay in memory and live in
  Ray's searcher snapshot in the bucket, which a resume restores (`--optuna-storage URL` gives
  them a real database instead, e.g. postgresql://... for users with a server).

Ray also pickles each OptunaSearch (with its study handle) in its snapshot, at most every few
seconds, so after a driver kill the database can be ahead of Ray: a trial proposed after the
last snapshot exists only in the database (Ray never ran it and proposes a new one), and a
trial finished after the snapshot is finished only there (Ray re-runs its tail). `reconcile`
settles both when the searcher is restored: the first kind is marked FAIL (so the per-method
count of COMPLETE trials still equals the budget), the second is marked done in the searcher
so its replayed result is not told twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dnet_tune.errors import DamagedFile, UserError, describe
from dnet_tune.tune import ray_internals
from dnet_tune.tune.storage import RESTORE, is_uri

JOURNAL = "optuna.journal"
RAY_TRIAL_ATTR = "ray_trial_id"
ORPHAN_ATTR = "dnet_tune"
ORPHAN_NOTE = ("orphaned: proposed after Ray's last snapshot before the driver died; never "
               "ran (the resumed search proposed another trial in its place)")
JOURNAL_REMEDY = (f"{RESTORE}; it holds the studies, without which this search cannot be "
                  f"resumed (dnet-tune report still reads its results)")


def study_name(experiment: str, method: str) -> str:
    return f"{experiment}:{method}"


def default_location(exp: str) -> str | None:
    """The journal file in a local (or file://) experiment folder; None on object storage."""
    if is_uri(exp) and not exp.startswith("file://"):
        return None
    local = exp[len("file://"):] if exp.startswith("file://") else exp
    return str(Path(local) / JOURNAL)


def masked(url: str | None) -> str | None:
    """A database URL without its password, as it is stored in search.json."""
    if url is None:
        return None
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(url: str | None, journal: str | None) -> Any:
    """An Optuna storage: the database at `url`, else the journal file, else None (memory)."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if url:
        try:
            return RDBStorage(url)
        except Exception as exc:  # the driver, the server, the credentials: all the user's
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot open --optuna-storage '{masked(url)}': {reason}") from None
    if journal:
        Path(journal).parent.mkdir(parents=True, exist_ok=True)
        try:  # Optuna replays every record here; it skips only a torn last one
            return JournalStorage(JournalFileBackend(journal))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            # a record that is not JSON (ValueError: JSONDecodeError, UnicodeDecodeError) or not
            # one of Optuna's operations (the rest, from replaying it)
            raise DamagedFile(journal, f"Optuna cannot replay it: {describe(exc)}",
                              JOURNAL_REMEDY) from None
    return None


def check_journal(journal: str | None) -> None:
    """Replay the journal once, writing nothing: a damaged one fails before a resume starts."""
    if journal and os.path.isfile(journal):
        open_storage(None, journal)


def repair_journal(journal: str | None) -> bool:
    """Cut a torn last record (a driver killed mid-append); True if anything was cut.

    Optuna skips a torn *last* line when reading, but the next append would glue a new record
    onto it and make the journal unreadable.
    """
    if not journal or not os.path.isfile(journal):
        return False
    with open(journal, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return False
        f.truncate(data.rfind(b"\n") + 1)
    return True


def tag(searcher: Any, trial_id: str) -> None:
    """Name the Ray trial on its Optuna trial (for the dashboard, and for humans)."""
    ot_trial = ray_internals.optuna_trials(searcher).get(trial_id)
    if ot_trial is not None:
        ot_trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)


STAGE1_ONLY_NOTE = ("stage 2 never ran (the trial ended in stage 1): told again as a new trial "
                    "with the same ray_trial_id and its stage-1 parameters only")
RETOLD_NOTE = "its stage-1 parameters only: stage 2 never ran, its sampled values were dropped"


def _frozen(searcher: Any, trial_id: str) -> Any:
    """The storage's record of a trial the searcher proposed (its own copy may be stale)."""
    study: Any = ray_internals.optuna_study(searcher)
    ot_trial = ray_internals.optuna_trials(searcher)[trial_id]
    return ray_internals.study_storage(study).get_trial(ray_internals.storage_trial_id(ot_trial))


def told(searcher: Any, trial_id: str) -> bool:
    """Whether the trial's end is already in its study: told by this driver, or found finished
    in the storage by `reconcile` on a resume."""
    return trial_id in ray_internals.told_trials(searcher)


def report_epoch(searcher: Any, trial_id: str, value: float | None, epoch: Any) -> None:
    """One epoch's value as an intermediate value of the trial (step = the epoch).

    A step already in the storage is left alone: an epoch replayed after a retry or a resume
    (the same number: the checkpoint restores the RNG) was reported before, possibly by a
    driver that died after Ray's last snapshot, and Optuna would only warn about it. Nothing is
    reported for a trial whose end is already told, or without a value or an epoch.
    """
    if value is None or epoch is None or told(searcher, trial_id):
        return
    if trial_id not in ray_internals.optuna_trials(searcher):
        return
    step = int(epoch)
    if step in _frozen(searcher, trial_id).intermediate_values:
        return
    ray_internals.optuna_trials(searcher)[trial_id].report(float(value), step)


def tell_pruned(searcher: Any, trial_id: str) -> None:
    """End a trial ASHA stopped as PRUNED. Optuna gives it its last intermediate value (the
    best val up to the stop) as its value; TPE ranks it below every COMPLETE trial, among the
    PRUNED ones by the epoch it reached and then that value."""
    from optuna.trial import TrialState

    study: Any = ray_internals.optuna_study(searcher)
    study.tell(ray_internals.optuna_trials(searcher)[trial_id], state=TrialState.PRUNED)
    ray_internals.told_trials(searcher).add(trial_id)


def tell_without(searcher: Any, trial_id: str, value: float, unrun_prefix: str,
                 pruned: bool = False) -> bool:
    """Tell an ended trial's value with only the parameters it used: the study's record of
    the proposal (every sampled value) becomes FAIL with a note, and a new trial, COMPLETE or
    (`pruned`: ASHA stopped it) PRUNED, holds the value, the parameters not starting with
    `unrun_prefix` and the reported steps.

    TPE models each parameter only from trials that have it (and ignores FAIL), so values that
    never trained are judged by no one, while the rest of the trial still counts. The count of
    COMPLETE and PRUNED trials per study stays the budget. False (nothing done) when the trial
    has no such parameter. A resume sees the FAIL record as told (`reconcile`); a driver killed
    between the two writes leaves the trial FAIL only (TPE then has one observation fewer).
    """
    import optuna
    from optuna.trial import TrialState

    study: Any = ray_internals.optuna_study(searcher)
    ot_trial = ray_internals.optuna_trials(searcher)[trial_id]
    frozen = _frozen(searcher, trial_id)
    kept = [k for k in frozen.params if not k.startswith(unrun_prefix)]
    if len(kept) == len(frozen.params):
        return False
    ot_trial.set_user_attr(ORPHAN_ATTR, STAGE1_ONLY_NOTE)
    study.tell(ot_trial, state=TrialState.FAIL)
    ray_internals.told_trials(searcher).add(trial_id)
    user_attrs = {k: v for k, v in frozen.user_attrs.items() if k != ORPHAN_ATTR}
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
        value=value, params={k: frozen.params[k] for k in kept},
        distributions={k: frozen.distributions[k] for k in kept},
        user_attrs={**user_attrs, ORPHAN_ATTR: RETOLD_NOTE},
        intermediate_values=dict(frozen.intermediate_values)))
    return True


def rebind(searchers: dict[str, Any], storage: Any) -> None:
    """Point each restored OptunaSearch at `storage`: the pickled studies open the journal at
    the path the experiment had when it started, and an experiment folder may have moved."""
    if storage is None:
        return
    for searcher in searchers.values():
        if ray_internals.optuna_study(searcher) is not None:
            ray_internals.rebind_storage(searcher, storage)


def reconcile(searchers: dict[str, Any]) -> dict[str, int]:
    """Make each restored OptunaSearch agree with its study's storage (see the module doc).

    OptunaSearch keeps its study, its live trials and what it has told in internals
    (`ray_internals`). Returns how many trials of each kind.
    """
    from optuna.trial import TrialState

    out = {"orphaned": 0, "already_told": 0}
    for searcher in searchers.values():
        study = ray_internals.optuna_study(searcher)
        if study is None:
            continue
        storage = ray_internals.study_storage(study)
        live = ray_internals.optuna_trials(searcher)
        told = ray_internals.told_trials(searcher)
        known = {ray_internals.storage_trial_id(t) for t in live.values()}
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            frozen_id = ray_internals.storage_trial_id(frozen)
            if frozen_id not in known:
                storage.set_trial_user_attr(frozen_id, ORPHAN_ATTR, ORPHAN_NOTE)
                study.tell(frozen.number, state=TrialState.FAIL)
                out["orphaned"] += 1
        for ray_id, ot_trial in live.items():
            if ray_id in told:
                continue
            if storage.get_trial(ray_internals.storage_trial_id(ot_trial)).state.is_finished():
                told.add(ray_id)
                out["already_told"] += 1
    return out


def counts(storage: Any, experiment: str, methods: list[str]) -> dict[str, dict[str, int]]:
    """Trials per state of each method's study (search.json, tests)."""
    import optuna

    out = {}
    for method in methods:
        study = optuna.load_study(study_name=study_name(experiment, method), storage=storage)
        states: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            states[t.state.name] = states.get(t.state.name, 0) + 1
        out[method] = states
    return out
