"""Several methods in one Tuner: equal quotas, interleaving, own TPE studies, own ASHA rungs.

Real OptunaSearch and ASHAScheduler instances; the trials are Ray's own `Trial` objects (stubs:
nothing runs), so every decision here is the scheduler's and the searcher's own.
"""

from __future__ import annotations

import optuna
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from dnet_tune.tune.per_method import METHOD_KEY, PerMethodScheduler, PerMethodSearcher
from dnet_tune.tune.sampling import define_by_run
from dnet_tune.tune.space import default_space_path
from dnet_tune.tune.space_file import load_space

METHODS = ["difficulty_net", "ce", "cdb_ce"]


def _searcher(quota: int) -> PerMethodSearcher:
    space = load_space(default_space_path("digits_lt"))
    subs = {m: OptunaSearch(space=define_by_run(space, m), metric="val_acc", mode="max",
                            sampler=optuna.samplers.TPESampler(seed=0)) for m in METHODS}
    return PerMethodSearcher(subs, quota, metric="val_acc", mode="max")


def test_every_method_gets_its_quota_interleaved_then_finished():
    searcher = _searcher(quota=3)
    methods = []
    for i in range(9):
        config = searcher.suggest(f"t{i}")
        methods.append(config[METHOD_KEY])
    assert methods == METHODS * 3  # round robin: no method waits for another
    assert searcher.suggest("t9") == Searcher.FINISHED


def test_each_method_has_its_own_study():
    searcher = _searcher(quota=2)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(6)}
    for tid, config in configs.items():
        searcher.on_trial_complete(tid, {"val_acc": 0.5, **config})
    for method in METHODS:
        study = searcher.searchers[method]._ot_study
        trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
        assert len(trials) == 2
        if method == "ce":  # ce's study never saw a DN parameter
            assert all("dn.lr" not in t.params for t in trials)
        if method == "difficulty_net":
            assert all("dn.lr" in t.params for t in trials)


def _trial(tid: str, method: str) -> Trial:
    return Trial("fake", config={METHOD_KEY: method}, trial_id=tid, stub=True)


def _scheduler() -> PerMethodScheduler:
    sched = PerMethodScheduler(lambda: ASHAScheduler(time_attr="epoch", max_t=4, grace_period=1,
                                                     reduction_factor=2), ["fast", "slow"])
    assert sched.set_search_properties("val_acc", "max")
    return sched


def test_asha_rungs_are_per_method():
    """Strong `fast` trials at rung 1 must not stop a weaker `slow` trial: they are another
    method's. A second `slow` trial far below the first is stopped by its own method's rung."""
    sched = _scheduler()
    trials = [_trial(f"f{i}", "fast") for i in range(4)] + [_trial("s0", "slow"),
                                                             _trial("s1", "slow")]
    for t in trials:
        sched.on_trial_add(None, t)
    for i, t in enumerate(trials[:4]):
        sched.on_trial_result(None, t, {"epoch": 1, "val_acc": 0.90 + i * 0.01})
    assert sched.on_trial_result(None, trials[4], {"epoch": 1, "val_acc": 0.30}) == \
        TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, trials[5], {"epoch": 1, "val_acc": 0.10}) == \
        TrialScheduler.STOP


def test_one_shared_asha_would_have_stopped_it():
    """The control: the same results through one ASHA stop the weak method's first trial."""
    asha = ASHAScheduler(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
    asha.set_search_properties("val_acc", "max")
    trials = [_trial(f"f{i}", "fast") for i in range(4)] + [_trial("s0", "slow")]
    for t in trials:
        asha.on_trial_add(None, t)
    for i, t in enumerate(trials[:4]):
        asha.on_trial_result(None, t, {"epoch": 1, "val_acc": 0.90 + i * 0.01})
    assert asha.on_trial_result(None, trials[4], {"epoch": 1, "val_acc": 0.30}) == \
        TrialScheduler.STOP


def test_asha_rung_records_survive_a_restore_and_decide_the_same():
    """What Ray does not save: a scheduler restored with the records stops the same weak trial
    that the original would; a fresh one (Ray's restore without them) lets it continue."""
    sched = _scheduler()
    strong = [_trial(f"f{i}", "fast") for i in range(4)]
    for i, t in enumerate(strong):
        sched.on_trial_add(None, t)
        sched.on_trial_result(None, t, {"epoch": 1, "val_acc": 0.90 + i * 0.01})
    state = sched.rung_records()

    weak = _trial("w", "fast")
    restored, fresh = _scheduler(), _scheduler()
    restored.restore_rung_records(state)
    assert restored.restored == {"rung_records": 4, "trials_added_before": 0}
    for s in (sched, restored, fresh):
        s.on_trial_add(None, weak)
    result = {"epoch": 1, "val_acc": 0.10}
    assert sched.on_trial_result(None, weak, dict(result)) == TrialScheduler.STOP
    assert restored.on_trial_result(None, weak, dict(result)) == TrialScheduler.STOP
    assert fresh.on_trial_result(None, weak, dict(result)) == TrialScheduler.CONTINUE


def test_rung_records_for_other_milestones_are_refused():
    other = PerMethodScheduler(lambda: ASHAScheduler(time_attr="epoch", max_t=9, grace_period=3,
                                                     reduction_factor=3), ["fast", "slow"])
    other.set_search_properties("val_acc", "max")
    with pytest.raises(ValueError, match="milestones"):
        _scheduler().restore_rung_records(other.rung_records())
