"""A search whose driver is killed (kill -9) loses nothing it reported, and `--resume` finishes
it with the budget spent exactly once. The driver is a real subprocess with its own local Ray;
this module holds no `ray_local`."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import optuna
import pytest
from drivers import (
    MARK,
    ROOT,
    cli,
    driver_env,
    ended_trials,
    start,
    trial_rows,
    wait_until,
    wait_until_reaped,
)
from study_states import assert_studies_mirror

from dnet_tune.tune.faults import studies

METHODS = ["difficulty_net", "ce"]
TRIALS, EPOCHS = 4, 4


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A search killed with SIGKILL once at least two trials had ended, as the tables showed."""
    tmp = tmp_path_factory.mktemp("killed")
    env = driver_env(tmp_path_factory)
    space = tmp / "space.yaml"
    space.write_text((ROOT / "search_spaces" / "digits_lt.yaml").read_text())
    exp = tmp / "results" / "a"
    proc = start(env, "search", "--methods", ",".join(METHODS), "--smoke", "--trials", TRIALS,
                 "--max-epochs", EPOCHS, "--no-confirm", "--space", space,
                 "--storage", tmp / "results", "--name", "a", log=tmp / "first.log")
    try:
        wait_until(lambda: len(ended_trials(exp)) >= 2, timeout=240, proc=proc)
        ended = ended_trials(exp)  # what the tables said just before the kill
        rows = {t: [r for r in trial_rows(exp) if r["trial_id"] == t] for t in ended}
    finally:
        proc.kill()
        proc.wait()
    assert len(ended) < TRIALS * len(METHODS), "the search ended before the kill"
    # the driver could clean nothing up; its watchdog did (Ray's agents outlive a kill -9)
    wait_until_reaped(env[MARK])
    return {"tmp": tmp, "env": env, "exp": exp, "space": space, "ended": ended, "rows": rows}


def _run(env, *argv, timeout=600):
    return subprocess.run(cli(*argv), env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_the_tables_hold_what_ran_before_the_kill(killed):
    meta = json.loads((killed["exp"] / "search.json").read_text())
    assert meta["status"] == "running"  # nobody could write "interrupted": kill -9
    for tid, rows in killed["rows"].items():
        assert [r["epoch"] for r in rows] == list(range(1, killed["ended"][tid]["last_epoch"] + 1))
    res = _run(killed["env"], "report", killed["exp"], "--json")
    assert res.returncode == 0, res.stderr
    (report,) = json.loads(res.stdout)
    assert report["status"] == "interrupted"  # its driver is gone
    res = _run(killed["env"], "report", killed["exp"])
    assert res.returncode == 0 and "interrupted" in res.stdout
    assert f"dnet-tune search --resume {killed['exp']}" in res.stdout
    out = killed["tmp"] / "so-far.yaml"
    res = _run(killed["env"], "export", killed["exp"], "--out", out)
    assert res.returncode == 0 and out.is_file(), res.stderr
    assert f"note: {killed['exp']} is interrupted: this is the best so far" in res.stdout


def test_resume_refuses_flags_and_an_edited_space_in_one_line(killed):
    res = _run(killed["env"], "search", "--resume", killed["exp"], "--trials", 3)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("dnet-tune: error: --trials cannot be combined with --resume")
    original = killed["space"].read_text()
    killed["space"].write_text(original.replace("trials: 4", "trials: 5"))
    try:
        res = _run(killed["env"], "search", "--resume", killed["exp"])
    finally:
        killed["space"].write_text(original)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "changed since this experiment started" in res.stderr
    assert str(killed["space"]) in res.stderr and "Traceback" not in res.stderr


@pytest.fixture(scope="module")
def resumed(killed):
    res = _run(killed["env"], "search", "--resume", killed["exp"])
    assert res.returncode == 0, res.stdout + res.stderr
    wait_until_reaped(killed["env"][MARK])
    return {**killed, "out": res.stdout}


def test_resume_keeps_what_ended_and_spends_the_budget_exactly_once(resumed):
    exp = resumed["exp"]
    rows = trial_rows(exp)
    for tid, before in resumed["rows"].items():  # identical, timing and all
        after = [r for r in rows if r["trial_id"] == tid]
        assert len(after) == len(before), tid
        for a, b in zip(after, before, strict=True):
            diff = {k: (b.get(k), a.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
            assert not diff, (tid, a["epoch"], diff)
    ended = ended_trials(exp)
    assert all(r["status"] in {"finished", "stopped"} for r in ended.values())
    for method in METHODS:
        assert sum(r["method"] == method for r in ended.values()) == TRIALS
    for tid, trial in ended.items():
        epochs = [r["epoch"] for r in rows if r["trial_id"] == tid]
        assert epochs == list(range(1, trial["last_epoch"] + 1)), tid
    assert "resuming:" in resumed["out"]


def test_resume_restores_asha_rungs_before_the_trials_and_each_study(resumed):
    """The studies after a kill -9 and a resume: every ended trial once, in the state its end
    says (ASHA's stops PRUNED), with every epoch's intermediate value; the samplers are the ones
    the search started with, as search.json recorded them."""
    exp = resumed["exp"]
    meta = json.loads((exp / "search.json").read_text())
    assert meta["status"] == "finished" and len(meta["resumes"]) == 1
    asha = meta["resumes"][0]["asha_restored"]
    assert asha["rung_records"] >= 1 and asha["trials_added_before"] == 0
    storage = studies.open_storage(None, str(exp / studies.JOURNAL))
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for method in METHODS:
        study = optuna.load_study(study_name=studies.study_name("a", method), storage=storage)
        done = [t for t in study.trials if t.state in counted]
        assert len(done) == TRIALS
        assert {t.user_attrs[studies.RAY_TRIAL_ATTR] for t in done} == {
            t for t, r in ended_trials(exp).items() if r["method"] == method}
        others = [t for t in study.trials if t.state not in counted]
        assert all(t.state == optuna.trial.TrialState.FAIL
                   and t.user_attrs[studies.ORPHAN_ATTR] == studies.ORPHAN_NOTE for t in others)
    assert sum(assert_studies_mirror(exp).values()) == TRIALS * len(METHODS)
    assert meta["optuna_trials"] == {m: dict(Counter(
        t.state.name for t in optuna.load_study(study_name=studies.study_name("a", m),
                                                storage=storage).trials)) for m in METHODS}
    sampler = meta["sampler"]
    assert meta["resumes"][0]["samplers"] == {m: {"class": sampler["class"], **{
        k: v for k, v in sampler["settings"].items() if k != "seed"}} for m in METHODS}


def test_a_finished_experiment_is_not_resumed(resumed):
    res = _run(resumed["env"], "search", "--resume", resumed["exp"])
    assert res.returncode == 2 and "is finished; nothing to resume" in res.stderr


def test_resume_of_something_else_is_one_line(cli, one_line_error, tmp_path):
    code, _, err = cli("search", "--resume", tmp_path / "nothing")
    one_line_error(code, err, "is not a dnet-tune experiment")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "search.json").write_text('{"status": "finished"}')
    code, _, err = cli("search", "--resume", tmp_path / "old")
    one_line_error(code, err, "older dnet-tune that could not resume")


def test_a_running_search_is_told_from_a_dead_one_by_pid_and_start_time():
    import os
    import socket

    from dnet_tune.tune import driver

    parent = {"status": "running", "driver": {
        "pid": os.getppid(), "host": socket.gethostname(),
        "start_ticks": driver.start_ticks(os.getppid())}}
    assert driver.driver_alive(parent) and driver.effective_status(parent) == "running"
    reused = {**parent, "driver": {**parent["driver"], "start_ticks": -1}}  # pid reused
    assert not driver.driver_alive(reused)
    assert driver.effective_status(reused) == "interrupted"
    elsewhere = {**parent, "driver": {**parent["driver"], "host": "another-host"}}
    assert driver.effective_status(elsewhere) == "running"  # cannot know: says what it says
