"""`--sampler` and `--scheduler`: TPE's settings (each choice's, recorded in search.json), and the
baselines that bench/search_efficiency.py measures ASHA + TPE against (random proposals, every
trial trained to the end)."""

from __future__ import annotations

import inspect
import json
from types import SimpleNamespace

import optuna
import pyarrow.parquet as pq
import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from study_states import assert_studies_mirror, load_studies

from dnet_tune.errors import UserError
from dnet_tune.tune import ray_internals, samplers
from dnet_tune.tune.per_method import PerMethodScheduler
from dnet_tune.tune.plan import (
    SAMPLERS,
    Budget,
    Resources,
    SearchRequest,
    algorithm_note,
    check_arguments,
)
from dnet_tune.tune.runner import _sampler, _scheduler


def _spec(**kw):
    return SimpleNamespace(seed=3, epochs=4, budget=Budget(4, 4, 1, 2), methods=["ce"],
                           resources=Resources(0, 0, 1, 2), sampler_settings=None, **kw)


def test_the_request_picks_the_sampler_and_the_scheduler():
    assert isinstance(_sampler(_spec(sampler="tpe")), optuna.samplers.TPESampler)
    assert isinstance(_sampler(_spec(sampler="tpe-mv")), optuna.samplers.TPESampler)
    assert isinstance(_sampler(_spec(sampler="random")), optuna.samplers.RandomSampler)
    asha = _scheduler(_spec(scheduler="asha"))
    assert isinstance(asha, ASHAScheduler) and asha._max_t == 4
    fifo = _scheduler(_spec(scheduler="none"))
    assert isinstance(fifo, FIFOScheduler) and not isinstance(fifo, ASHAScheduler)


@pytest.mark.parametrize(("field", "value"), [("sampler", "grid"), ("scheduler", "hyperband")])
def test_an_unknown_sampler_or_scheduler_is_refused_by_name(field, value):
    with pytest.raises(UserError, match=f"--{field} must be one of .*got '{value}'"):
        check_arguments(SearchRequest(**{field: value}))


def test_rung_records_without_asha_round_trip():
    """A resumed `--scheduler none` search saves and restores (empty) rung records."""
    sched = PerMethodScheduler(FIFOScheduler, ["ce", "difficulty_net"])
    state = sched.rung_records()
    assert state == {m: {"rungs": [], "num_stopped": 0} for m in ("ce", "difficulty_net")}
    again = PerMethodScheduler(FIFOScheduler, ["ce", "difficulty_net"])
    again.restore_rung_records(state)
    assert again.restored == {"rung_records": 0, "trials_added_before": 0}


@pytest.mark.parametrize("scheduler", ["asha", "none"])
def test_without_asha_every_trial_runs_to_the_end(ray_local, cli, tmp_path, scheduler):
    """One trial at a time (2 CPUs per trial), so the run is deterministic: with these flags ASHA
    stops trials, and with `--scheduler none` the same search stops none."""
    code, _, err = cli("search", "--dataset", "digits_lt", "--method", "difficulty_net",
                       "--smoke", "--trials", 5, "--max-epochs", 3, "--grace-period", 1,
                       "--cpus-per-trial", 2, "--no-confirm", "--sampler", "random",
                       "--scheduler", scheduler, "--storage", tmp_path, "--name", "rs")
    assert code == 0, err
    exp = tmp_path / "rs"
    summary = pq.read_table(exp / "summary.parquet").to_pylist()
    ends = [(r["status"], r["last_epoch"]) for r in summary]
    if scheduler == "none":
        assert ends == [("finished", 3)] * 5
    else:
        assert any(status == "stopped" and last < 3 for status, last in ends), ends
    request = json.loads((exp / "search.json").read_text())["request"]
    assert (request["sampler"], request["scheduler"]) == ("random", scheduler)
    assert len({r["config/optim.lr"] for r in summary}) == 5  # five different proposals
    code, out, err = cli("report", exp, "--json")
    assert code == 0, err
    (rep,) = json.loads(out)
    assert (rep["sampler"], rep["scheduler"]) == ("random", scheduler)


def test_a_search_without_tpe_or_asha_says_so_in_its_titles():
    assert algorithm_note("tpe", "asha") == ""
    assert algorithm_note("random", "asha") == " (random proposals)"
    assert algorithm_note("random", "none") == " (random proposals, no early stopping)"
    assert algorithm_note("tpe-mv", "asha") == " (grouped TPE, scaled random start)"
    assert algorithm_note("tpe-independent", "none") == (" (independent TPE, no early "
                                                          "stopping)")


# ------------------------------------------------------------------- TPE's settings (issue 20)

def _proposals(sampler, n=14):
    """What a sampler proposes on a small conditional space, told a fixed objective."""
    def objective(trial):
        depth = trial.suggest_int("depth", 1, 3)
        widths = [trial.suggest_int(f"w{i}", 8, 64, log=True) for i in range(depth)]
        return -abs(trial.suggest_float("lr", 1e-4, 1.0, log=True) - 0.03) - sum(widths) / 1e3

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=n)
    return [t.params for t in study.trials]


def _optuna_tpe_defaults():
    """The installed Optuna's TPESampler defaults, as it resolves them for a single-objective
    study (its `multivariate=None` means True there)."""
    params = inspect.signature(optuna.samplers.TPESampler.__init__).parameters
    out = {k: params[k].default for k in samplers.TPE_KEYS}
    if out["multivariate"] is None:
        out["multivariate"] = True
    return out


def test_tpe_is_optuna_5s_default_written_out_and_every_choice_records_what_it_builds():
    """`tpe`, the default, is Optuna 5's `TPESampler(seed=...)`, proposal for proposal, with its
    settings written out (Optuna 4 runs the same then); every choice is built from the very
    settings search.json records."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tpe = samplers.settings("tpe", 3, 16, 2, 1)
    assert tpe == {"seed": 3, **samplers.TPE}
    if int(optuna.__version__.split(".")[0]) >= 5:
        assert _optuna_tpe_defaults() == samplers.TPE
        assert _proposals(samplers.build("tpe", tpe)) == _proposals(
            optuna.samplers.TPESampler(seed=3))
    for name in SAMPLERS:
        kwargs = samplers.settings(name, 3, 16, 2, 1)
        assert kwargs["seed"] == 3
        built = samplers.build(name, kwargs)
        record = samplers.record(name, kwargs)
        assert record == {"name": name, "class": type(built).__name__, "settings": kwargs}
        assert ray_internals.sampler_settings(built) == {
            "class": record["class"], **{k: v for k, v in kwargs.items() if k != "seed"}}
    assert samplers.settings("tpe-mv", 3, 16, 2, 1) == {
        "seed": 3, "n_startup_trials": 3, "n_ei_candidates": 24, "multivariate": True,
        "group": True, "constant_liar": True}
    assert samplers.settings("tpe-independent", 3, 16, 2, 1) == {
        "seed": 3, "n_startup_trials": 10, "n_ei_candidates": 24, "multivariate": False,
        "group": False, "constant_liar": False}
    assert samplers.settings("random", 3, 16, 2, 1) == {"seed": 3}


@pytest.mark.parametrize(("trials", "slots", "methods", "startup"), [
    (16, 1, 1, 4),  # the default budget: a quarter random, not 10 of 16
    (16, 8, 1, 2),  # 8 slots: 8 proposals are blind anyway; TPE after the second result
    (16, 8, 4, 3),  # 4 methods share the 8 slots: 2 of each run at once
    (40, 1, 1, 10),  # Optuna's 10 at most
    (40, 3, 1, 8),
    (4, 2, 1, 2),  # the smoke budget: at least 2
])
def test_tpe_mv_scales_its_random_start_to_the_budget_and_the_slots(trials, slots, methods,
                                                                     startup):
    kwargs = samplers.settings("tpe-mv", 0, trials, slots, methods)
    assert kwargs["n_startup_trials"] == startup


@pytest.fixture(scope="module")
def parallel(ray_local, tmp_path_factory, run_cli):
    """One method, two slots (1 CPU per trial on the 2-CPU Ray), `--sampler tpe-mv`."""
    storage = tmp_path_factory.mktemp("parallel")
    res = run_cli("search", "--dataset", "digits_lt", "--method", "ce", "--smoke", "--trials", 6,
                  "--max-epochs", 2, "--grace-period", 1, "--sampler", "tpe-mv",
                  "--no-confirm", "--seed", 0, "--storage", storage, "--name", "par")
    assert res["code"] == 0, res["err"]
    return storage / "par"


def test_parallel_trials_proposed_together_get_different_configs(parallel):
    """Two slots: trials proposed while another was running in the study (what the constant
    liar sees) got different configs, TPE's own proposals among them, not only the random start;
    search.json records every setting the sampler ran with."""
    meta = json.loads((parallel / "search.json").read_text())
    assert meta["resources"]["slots"] == 2 and meta["peak_running_trials"] == 2
    assert meta["sampler"] == {"name": "tpe-mv", "class": "TPESampler", "settings": {
        "seed": 0, "n_startup_trials": 2, "n_ei_candidates": 24, "multivariate": True,
        "group": True, "constant_liar": True}}
    study = load_studies(parallel)["ce"]
    trials = sorted((t for t in study.get_trials(deepcopy=False)
                     if t.state != optuna.trial.TrialState.FAIL), key=lambda t: t.datetime_start)
    assert len(trials) == 6
    together = [(a, b) for i, a in enumerate(trials) for b in trials[i + 1:]
                if b.datetime_start < a.datetime_complete]
    assert together
    for a, b in together:
        assert a.params != b.params, (a.number, b.number)
    by_tpe = [b for _, b in together
              if sum(t.datetime_complete < b.datetime_start for t in trials) >= 2]
    assert by_tpe  # proposed after the 2 random startup trials had ended: TPE's, liar on
    assert_studies_mirror(parallel)
