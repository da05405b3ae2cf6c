"""`--sampler` and `--scheduler`: the baselines that bench/search_efficiency.py measures ASHA + TPE
against (random proposals, every trial trained to the end)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import optuna
import pyarrow.parquet as pq
import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from dnet_tune.errors import UserError
from dnet_tune.tune.per_method import PerMethodScheduler
from dnet_tune.tune.plan import Budget, SearchRequest, algorithm_note, check_arguments
from dnet_tune.tune.runner import _sampler, _scheduler


def _spec(**kw):
    return SimpleNamespace(seed=3, epochs=4, budget=Budget(4, 4, 1, 2), **kw)


def test_the_request_picks_the_sampler_and_the_scheduler():
    assert isinstance(_sampler(_spec(sampler="tpe")), optuna.samplers.TPESampler)
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
