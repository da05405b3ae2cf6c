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


def _searcher(journal) -> PerMethodSearcher:
    space = load_space(default_space_path("digits_lt"))
    sub = OptunaSearch(space=define_by_run(space, "ce"), metric="val_acc", mode="max",
                       sampler=optuna.samplers.TPESampler(seed=0),
                       storage=studies.open_storage(None, str(journal)),
                       study_name=studies.study_name("e", "ce"))
    return PerMethodSearcher({"ce": sub}, 4, metric="val_acc", mode="max")


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
