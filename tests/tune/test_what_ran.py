"""What runs is what was asked, and what is recorded is what ran (issue 18, the search side).

Two small real searches on a local Ray, each checked for several things:
- `two_stage`: a space with stage 2 on (10 epochs under `fixed:`) and `stage2.lr` sampled, run
  with --smoke and a --set over a `fixed:` key; ASHA stops trials in stage 1.
- `unconfirmed`: Difficulty-Net on Balanced Softmax against CE, --no-confirm, and a grace
  period that leaves ASHA no rung.
"""

from __future__ import annotations

import json

import optuna
import pyarrow.parquet as pq
import pytest
import yaml
from study_states import assert_studies_mirror

from dnet_tune.fileio import table_to_rows
from dnet_tune.tune.checked_search import base_config
from dnet_tune.tune.plan import SearchRequest, budget_for
from dnet_tune.tune.space import default_space_path
from dnet_tune.tune.space_file import load_space

TWO_STAGE_SPACE = """
budget: {trials: 5, max_epochs: 2, grace_period: 1, reduction_factor: 2}
smoke: {trials: 5, max_epochs: 2, grace_period: 1, reduction_factor: 2}
fixed:
  optim: {momentum: 0.8}
  stage2: {enabled: true, epochs: 10}
common:
  optim.lr: {type: float, low: 0.01, high: 0.2, log: true}
  stage2.lr: {type: float, low: 0.01, high: 0.2, log: true}
methods:
  ce: {}
"""


def _words(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def two_stage(ray_local, tmp_path_factory, run_cli):
    """One trial at a time (2 CPUs each): ASHA's decisions are deterministic."""
    root = tmp_path_factory.mktemp("two_stage")
    space = root / "space.yaml"
    space.write_text(TWO_STAGE_SPACE)
    res = run_cli("search", "--dataset", "digits_lt", "--space", space, "--smoke",
                  "--methods", "ce", "--cpus-per-trial", 2, "--no-confirm",
                  "--set", "optim.momentum=0.7", "--storage", root, "--name", "two")
    assert res["code"] == 0, res["err"]
    exp = root / "two"
    return {**res, "exp": exp,
            "summary": pq.read_table(exp / "summary.parquet").to_pylist(),
            "rows": table_to_rows(pq.read_table(exp / "trials.parquet")),
            "study": optuna.load_study(study_name="two:ce",
                                       storage=optuna.storages.JournalStorage(
                                           optuna.storages.journal.JournalFileBackend(
                                               str(exp / "optuna.journal"))))}


@pytest.fixture(scope="module")
def unconfirmed(ray_local, tmp_path_factory, run_cli):
    root = tmp_path_factory.mktemp("unconfirmed")
    res = run_cli("search", "--dataset", "digits_lt", "--methods", "difficulty_net,ce",
                  "--smoke", "--trials", 2, "--max-epochs", 2, "--grace-period", 2,
                  "--no-confirm", "--set", "method.base_loss=balanced_softmax",
                  "--storage", root, "--name", "unc")
    assert res["code"] == 0, res["err"]
    return {**res, "exp": root / "unc"}


# ---------------------------------------------------------------- --set over `fixed:`

def test_set_beats_the_space_s_fixed_and_says_so_once(two_stage):
    line = "--set overrides the space's fixed: optim.momentum=0.7 (fixed: 0.8)"
    assert two_stage["out"].count(line) == 1, two_stage["out"]
    for r in two_stage["summary"]:
        assert yaml.safe_load(r["config_yaml"])["optim"]["momentum"] == 0.7


def test_set_beats_fixed_in_the_two_stage_space_and_smoke():
    """The issue's case: `--set stage2.epochs=3` on the two-stage space used to run 10."""
    space = load_space(default_space_path("digits_lt").parent / "cifar_lt_two_stage.yaml")
    for smoke, sets, epochs in ((False, ["stage2.epochs=3"], 3), (True, ["stage2.epochs=3"], 3),
                                (False, [], 10), (True, [], 1)):
        req = SearchRequest(dataset="cifar10_lt", sets=sets, smoke=smoke)
        base = base_config(req, space, budget_for(req, space), "ce")
        assert base["stage2"]["epochs"] == epochs, (smoke, sets)


# ---------------------------------------------------------------- stage 2 in a search

def test_smoke_shrinks_stage_2_too(two_stage):
    exp = two_stage["exp"]
    assert json.loads((exp / "search.json").read_text())["epochs_per_trial"] == 3
    finished = [r for r in two_stage["summary"] if r["status"] == "finished"]
    assert finished and all(r["last_epoch"] == 3 for r in finished)
    for r in finished:
        stages = [x["stage"] for x in two_stage["rows"] if x["trial_id"] == r["trial_id"]]
        assert stages == [1, 1, 2]
        assert yaml.safe_load(r["config_yaml"])["stage2"]["epochs"] == 1


def test_stage_2_values_are_told_to_optuna_only_by_trials_that_ran_stage_2(two_stage):
    """A trial ASHA stopped in stage 1 is in its study as PRUNED with its stage-1 parameters
    only and its per-epoch values (the proposal with every sampled value is FAIL, which TPE
    ignores); one that ran stage 2 is COMPLETE with its stage-2 values. Either way the value is
    the trial's best val."""
    from optuna.trial import TrialState

    summary = two_stage["summary"]
    in_stage1 = [r for r in summary if r["last_epoch"] <= 2]  # stage 1 is epochs 1-2
    assert in_stage1 and all(r["status"] == "stopped" for r in in_stage1), summary
    trials = two_stage["study"].get_trials(deepcopy=False)
    for r in summary:
        mine = {t.state: t for t in trials if t.user_attrs["ray_trial_id"] == r["trial_id"]}
        if r in in_stage1:
            told = mine[TrialState.PRUNED]
            assert set(mine) == {TrialState.PRUNED, TrialState.FAIL}
            assert "stage2.lr" not in told.params
            assert mine[TrialState.FAIL].params["stage2.lr"] == r["config/stage2.lr"]
        else:
            told = mine[TrialState.COMPLETE]
            assert set(mine) == {TrialState.COMPLETE}
            assert told.params["stage2.lr"] == r["config/stage2.lr"]
        assert told.params["optim.lr"] == r["config/optim.lr"]
        assert told.value == r["best_val_acc"]
    counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == len(two_stage["summary"]) == 5  # the budget, as before
    assert assert_studies_mirror(two_stage["exp"]) == {"PRUNED": len(in_stage1),
                                                       "COMPLETE": 5 - len(in_stage1)}


# ---------------------------------------------------------------- one number per trial

def test_asha_and_optuna_see_the_best_val_so_far(two_stage):
    for r in two_stage["summary"]:
        rows = [x for x in two_stage["rows"] if x["trial_id"] == r["trial_id"]]
        best = 0.0
        for x in rows:
            best = max(best, x["val_acc"])
            assert x["best_val_acc"] == best
    fell_back = [r for r in two_stage["summary"]
                 if [x for x in two_stage["rows"] if x["trial_id"] == r["trial_id"]][-1][
                     "val_acc"] < r["best_val_acc"]]
    assert fell_back  # a trial whose last epoch is not its best: the case that differed


# ---------------------------------------------------------------- data construction keys

@pytest.mark.parametrize("key", ["data.imbalance", "data.meta_per_class", "data.profile"])
def test_a_space_cannot_sample_what_builds_the_data(cli, one_line_error, tmp_path, key):
    text = default_space_path("digits_lt").read_text()
    spec = ("{type: categorical, choices: [standard, paper]}" if key == "data.profile"
            else "{type: int, low: 5, high: 20}")
    space = tmp_path / "space.yaml"
    space.write_text(text.replace("common:\n", f"common:\n  {key}: {spec}\n", 1))
    storage = tmp_path / "results"
    code, _, err = cli("search", "--space", space, "--smoke", "--storage", storage)
    one_line_error(code, err, f"common.{key}", "decides the dataset's splits", "fixed:")
    assert not storage.exists()


# ---------------------------------------------------------------- labels say what ran

def test_inert_asha_is_said_once_and_recorded(unconfirmed, run_cli):
    out, exp = unconfirmed["out"], unconfirmed["exp"]
    assert _words(out).count("ASHA inert") == 1, out
    meta = json.loads((exp / "search.json").read_text())
    assert meta["request"]["scheduler"] == "asha"  # what was asked, for --resume
    assert meta["scheduler"] == "asha_inert"  # what ran
    (rep,) = json.loads(run_cli("report", exp, "--json")["out"])
    assert rep["scheduler"] == "asha_inert"
    assert "ASHA inert" in _words(run_cli("report", exp)["out"])


def test_dn_on_balanced_softmax_is_labelled_so(unconfirmed, run_cli):
    (rep,) = json.loads(run_cli("report", unconfirmed["exp"], "--json")["out"])
    rows = {r["method"]: r for r in rep["rows"]}
    assert rows["difficulty_net"]["label"] == "difficulty_net (+balanced_softmax)"
    assert rows["ce"]["label"] == "ce"
    assert rep["difference"]["base_not_compared"] is True
    for out in (unconfirmed["out"], run_cli("report", unconfirmed["exp"])["out"]):
        words = _words(out)
        assert "difficulty_net (+balanced_softmax) − ce (best baseline by val)" in words
        assert ("difficulty_net ran on balanced_softmax, which is not among the compared "
                "methods") in words


def test_an_unconfirmed_report_says_so_in_its_title_and_headers(unconfirmed, run_cli):
    from dnet_tune.tune.report.data import load_report_data
    from dnet_tune.tune.report.html import render_html

    out = _words(run_cli("report", unconfirmed["exp"])["out"])
    assert "unc (ASHA inert" in out and "(not confirmed: one trial each" in out
    assert "1 run 1 run" in out and "±95%CI" not in out  # under "val" and "test"
    page = render_html(load_report_data(str(unconfirmed["exp"])), [])
    assert "(not confirmed: one trial each, at its best epoch)</h1>" in page
    assert "<th>val (1 run, best epoch)</th><th>test (1 run)</th>" in page
    assert "difficulty_net (+balanced_softmax)" in page
