"""The Optuna journal of a search and how a restored searcher is made to agree with it.

Real OptunaSearch, real Optuna JournalStorage on disk, the searcher's own save/restore (what
Ray calls at each snapshot and on a resume).
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from dnet_tune.tune.faults import studies
from dnet_tune.tune.per_method import PerMethodSearcher
from dnet_tune.tune.sampling import define_by_run
from dnet_tune.tune.space import default_space_path
from dnet_tune.tune.space_file import load_space


def _searcher(journal, **kw) -> PerMethodSearcher:
    space = load_space(default_space_path("digits_lt"))
    sub = OptunaSearch(space=define_by_run(space, "ce"), metric="val_acc", mode="max",
                       sampler=optuna.samplers.TPESampler(seed=0),
                       storage=studies.open_storage(None, str(journal)),
                       study_name=studies.study_name("e", "ce"))
    return PerMethodSearcher({"ce": sub}, 4, metric="val_acc", mode="max", **kw)


def _study(journal):
    return optuna.load_study(study_name=studies.study_name("e", "ce"),
                             storage=studies.open_storage(None, str(journal)))


def test_a_restored_searcher_settles_what_the_journal_saw_after_the_snapshot(tmp_path):
    journal = tmp_path / studies.JOURNAL
    snapshot = tmp_path / "searcher.pkl"
    live = _searcher(journal)
    for tid in ("t0", "t1"):
        live.suggest(tid)
    live.on_trial_complete("t0", {"val_acc": 0.5})
    live.save(str(snapshot))  # Ray's last snapshot before the driver dies
    live.on_trial_complete("t1", {"val_acc": 0.7})  # told after it
    live.suggest("t2")  # proposed after it: Ray never ran it

    restored = _searcher(journal)  # as unpickled from tuner.pkl
    restored.restore(str(snapshot))
    assert restored.reconciled == {"orphaned": 1, "already_told": 1}
    by_ray = {t.user_attrs[studies.RAY_TRIAL_ATTR]: t for t in _study(journal).trials}
    assert by_ray["t2"].state == TrialState.FAIL
    assert by_ray["t2"].user_attrs[studies.ORPHAN_ATTR] == studies.ORPHAN_NOTE
    # Ray re-runs t1's tail: its replayed end is not told twice (Optuna would refuse it)
    restored.on_trial_result("t1", {"val_acc": 0.6, "training_iteration": 3})
    restored.on_trial_complete("t1", {"val_acc": 0.6})
    assert by_ray["t1"].state == TrialState.COMPLETE
    assert _study(journal).trials[by_ray["t1"].number].value == 0.7
    assert restored.suggest("t3") is not None  # the quota the orphan never used
    states = [t.state for t in _study(journal).trials]
    assert states.count(TrialState.COMPLETE) == 2 and states.count(TrialState.FAIL) == 1


def test_a_moved_experiment_writes_its_own_journal_after_a_restore(tmp_path):
    old, new = tmp_path / "old" / studies.JOURNAL, tmp_path / "new" / studies.JOURNAL
    old.parent.mkdir()
    searcher = _searcher(old)
    searcher.suggest("t0")
    searcher.save(str(tmp_path / "searcher.pkl"))
    new.parent.mkdir()
    new.write_bytes(old.read_bytes())  # the folder moved (copied) with its journal
    before = old.read_bytes()
    restored = _searcher(new)
    restored.rebind_to = studies.open_storage(None, str(new))
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("t0", {"val_acc": 0.5})
    restored.suggest("t1")
    assert old.read_bytes() == before
    assert [t.state for t in _study(new).trials] == [TrialState.COMPLETE, TrialState.RUNNING]


def test_a_torn_last_journal_record_is_cut_before_a_resume(tmp_path):
    journal = tmp_path / studies.JOURNAL
    searcher = _searcher(journal)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"val_acc": 0.5})
    good = journal.read_bytes()
    assert not studies.repair_journal(str(journal))  # intact: untouched
    journal.write_bytes(good + b'{"op_code": 5, "trial_id": 0, "sta')  # killed mid-append
    assert studies.repair_journal(str(journal))
    assert journal.read_bytes() == good
    again = _searcher(journal)  # appends after the cut, and the journal still reads
    again.suggest("t1")
    assert len(_study(journal).trials) == 2
    assert not studies.repair_journal(str(tmp_path / "missing.journal"))


def test_database_urls_are_stored_without_their_password():
    assert studies.masked("postgresql://me:secret@db:5432/optuna") == (
        "postgresql://me:***@db:5432/optuna")
    assert studies.masked(None) is None
    assert studies.default_location("s3://bucket/dnet/exp") is None
    assert studies.default_location("file:///mnt/r/exp") == f"/mnt/r/exp/{studies.JOURNAL}"


def _epochs(searcher, tid, vals, start=1, last=None):
    """Tune's calls for a trial that reports `vals` from epoch `start`: every epoch but the one
    it ends at reaches on_trial_result (Tune withholds the result on which a scheduler stops
    it), then on_trial_complete with that last result."""
    results = [{"epoch": start + i, "val_acc": v} for i, v in enumerate(vals)]
    for r in results[:-1]:
        searcher.on_trial_result(tid, r)
    if last is not False:
        searcher.on_trial_complete(tid, {**results[-1], **(last or {})})


def test_how_a_trial_ends_is_its_state_and_every_epoch_is_a_step(tmp_path):
    """ASHA's stop → PRUNED (value: its last intermediate value), every epoch → COMPLETE,
    diverged → COMPLETE with 0.0, error → FAIL; steps are epochs, the last one included."""
    from optuna.trial import TrialState

    journal = tmp_path / studies.JOURNAL
    searcher = _searcher(journal, trial_epochs=4)
    for tid in ("stopped", "finished", "diverged", "errored"):
        searcher.suggest(tid)
    _epochs(searcher, "stopped", [0.2, 0.3])
    _epochs(searcher, "finished", [0.2, 0.4, 0.5, 0.6])
    _epochs(searcher, "diverged", [0.3, 0.0], last={"diverged": True})
    _epochs(searcher, "errored", [0.1, 0.2], last=False)
    searcher.on_trial_complete("errored", error=True)
    by_ray = {t.user_attrs[studies.RAY_TRIAL_ATTR]: t for t in _study(journal).trials}
    assert {k: t.state for k, t in by_ray.items()} == {
        "stopped": TrialState.PRUNED, "finished": TrialState.COMPLETE,
        "diverged": TrialState.COMPLETE, "errored": TrialState.FAIL}
    assert {k: t.value for k, t in by_ray.items()} == {
        "stopped": 0.3, "finished": 0.6, "diverged": 0.0, "errored": None}
    assert {k: t.intermediate_values for k, t in by_ray.items()} == {
        "stopped": {1: 0.2, 2: 0.3}, "finished": {1: 0.2, 2: 0.4, 3: 0.5, 4: 0.6},
        "diverged": {1: 0.3, 2: 0.0}, "errored": {1: 0.1}}


def test_a_replayed_epoch_is_one_step_and_a_resume_keeps_the_states(tmp_path):
    """After a restore Ray replays epochs from a trial's last checkpoint: one step each, the
    value first reported kept; a trial the journal has ended after the snapshot stays as it
    ended."""
    from optuna.trial import TrialState

    journal, snapshot = tmp_path / studies.JOURNAL, tmp_path / "searcher.pkl"
    live = _searcher(journal, trial_epochs=4)
    for tid in ("t0", "t1"):
        live.suggest(tid)
    live.on_trial_result("t0", {"epoch": 1, "val_acc": 0.2})
    live.on_trial_result("t1", {"epoch": 1, "val_acc": 0.5})
    live.save(str(snapshot))  # Ray's last snapshot; then, before the driver dies:
    live.on_trial_result("t0", {"epoch": 2, "val_acc": 0.3})
    live.on_trial_complete("t1", {"epoch": 2, "val_acc": 0.6})  # ASHA stopped it

    restored = _searcher(journal, trial_epochs=4)
    restored.restore(str(snapshot))
    assert restored.reconciled == {"orphaned": 0, "already_told": 1}
    restored.on_trial_complete("t1", {"epoch": 2, "val_acc": 0.6})  # its tail re-run: told
    restored.on_trial_result("t0", {"epoch": 2, "val_acc": 0.35})  # replayed from epoch 1
    restored.on_trial_result("t0", {"epoch": 3, "val_acc": 0.4})
    restored.on_trial_complete("t0", {"epoch": 4, "val_acc": 0.5})
    by_ray = {t.user_attrs[studies.RAY_TRIAL_ATTR]: t for t in _study(journal).trials}
    assert by_ray["t1"].state == TrialState.PRUNED
    assert by_ray["t1"].intermediate_values == {1: 0.5, 2: 0.6}
    assert by_ray["t0"].state == TrialState.COMPLETE and by_ray["t0"].value == 0.5
    assert by_ray["t0"].intermediate_values == {1: 0.2, 2: 0.3, 3: 0.4, 4: 0.5}


def test_a_trial_stopped_in_stage_1_is_told_pruned_without_its_stage_2_values(tmp_path):
    """The stage-2 rule and PRUNED together: the proposal FAIL, a PRUNED trial with its stage-1
    parameters and its steps; one that diverged in stage 1 is COMPLETE with 0.0 the same way."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    def space(trial):
        trial.suggest_float("optim.lr", 0.01, 0.2, log=True)
        trial.suggest_float("stage2.lr", 0.01, 0.2, log=True)

    journal = tmp_path / studies.JOURNAL
    sub = OptunaSearch(space=space, metric="val_acc", mode="max",
                       sampler=optuna.samplers.TPESampler(seed=0),
                       storage=studies.open_storage(None, str(journal)),
                       study_name=studies.study_name("e", "ce"))
    searcher = PerMethodSearcher({"ce": sub}, 4, metric="val_acc", mode="max",
                                 stage1_epochs=2, trial_epochs=3)
    for tid in ("stopped", "diverged", "finished"):
        searcher.suggest(tid)
    _epochs(searcher, "stopped", [0.2, 0.3])
    _epochs(searcher, "diverged", [0.0], last={"diverged": True})
    _epochs(searcher, "finished", [0.2, 0.3, 0.4])
    trials = _study(journal).trials
    told = {(t.user_attrs[studies.RAY_TRIAL_ATTR], t.state): t for t in trials}
    assert sorted(told) == sorted([
        ("stopped", TrialState.FAIL), ("stopped", TrialState.PRUNED),
        ("diverged", TrialState.FAIL), ("diverged", TrialState.COMPLETE),
        ("finished", TrialState.COMPLETE)])
    pruned = told["stopped", TrialState.PRUNED]
    assert set(pruned.params) == {"optim.lr"} and pruned.value == 0.3
    assert pruned.intermediate_values == {1: 0.2, 2: 0.3}
    assert pruned.distributions["optim.lr"] == FloatDistribution(0.01, 0.2, log=True)
    assert told["diverged", TrialState.COMPLETE].value == 0.0
    assert "stage2.lr" in told["finished", TrialState.COMPLETE].params
