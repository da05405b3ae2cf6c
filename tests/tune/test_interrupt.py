"""Ctrl-C on a real subprocess driver: the first stops every trial at its next epoch boundary and
exits 130 with the resume command; the second exits at once; both stay resumable, and no
process of the driver's own local Ray outlives it. No `ray_local` in this module."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from drivers import (
    MARK,
    ROOT,
    cli,
    driver_env,
    ended_trials,
    live_epochs,
    start,
    trial_rows,
    wait_until,
    wait_until_reaped,
)
from study_states import assert_studies_mirror

METHODS = ["difficulty_net", "ce"]
TRIALS, EPOCHS = 2, 6
SEARCH = ("search", "--methods", ",".join(METHODS), "--smoke", "--trials", TRIALS,
          "--max-epochs", EPOCHS, "--grace-period", 2, "--no-confirm")


def _reports(env: dict[str, str]) -> dict[str, int]:
    """How many epochs each trial has reported to the driver so far (its live result.json)."""
    return live_epochs(env["DNET_RAY_TEMP_DIR"], "c")


def _no_strays(env: dict[str, str]) -> None:
    """Nothing started by that driver (its Ray's daemons, agents, workers) within 30 s."""
    wait_until_reaped(env[MARK])


def _resume(env, exp):
    res = subprocess.run(cli("search", "--resume", exp), env=env, capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    _no_strays(env)
    ended = ended_trials(exp)
    for method in METHODS:
        assert sum(r["method"] == method for r in ended.values()) == TRIALS
    rows = trial_rows(exp)
    for tid, trial in ended.items():
        assert [r["epoch"] for r in rows if r["trial_id"] == tid] == list(
            range(1, trial["last_epoch"] + 1)), tid
    # paused trials continued: each study records every trial once, as it ended, every step
    assert sum(assert_studies_mirror(exp).values()) == TRIALS * len(METHODS)
    return res


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_writes_what_ran_prints_the_resume_command_and_exits_130(
        tmp_path, tmp_path_factory, presses):
    env = driver_env(tmp_path_factory)
    exp = tmp_path / "results" / "c"
    proc = start(env, *SEARCH, "--storage", tmp_path / "results", "--name", "c",
                 log=tmp_path / "driver.log")
    try:
        # some trial has reported an epoch and is still running
        wait_until(lambda: any(0 < n < EPOCHS for t, n in _reports(env).items()
                               if t not in ended_trials(exp)), timeout=240, proc=proc)
        before = _reports(env)
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=300)
    finally:
        proc.kill()
    log = (tmp_path / "driver.log").read_text()
    assert code == 130, log
    assert f"continue with: dnet-tune search --resume {exp}" in log
    assert "Traceback" not in log
    _no_strays(env)
    assert json.loads((exp / "search.json").read_text())["status"] == "interrupted"
    ended = ended_trials(exp)
    rows = trial_rows(exp)
    unfinished = {r["trial_id"] for r in rows} - set(ended)
    assert unfinished or presses == 2, "nothing was running at the Ctrl-C"
    after = _reports(env)
    for tid in unfinished:
        epochs = [r["epoch"] for r in rows if r["trial_id"] == tid]
        assert epochs == list(range(1, len(epochs) + 1)), tid
        if presses == 1 and before.get(tid):
            # it finished the epoch it was in and stopped there: one more report (two if one
            # landed between our look and the signal), never the epoch lost
            assert 1 <= after[tid] - before[tid] <= 2, (tid, before[tid], after[tid])
    if presses == 1:
        assert "stops at the end of its current epoch" in log
    _resume(env, exp)


def test_a_search_that_fails_leaves_no_process_behind(tmp_path, tmp_path_factory):
    env = driver_env(tmp_path_factory)
    res = subprocess.run(cli("search", "--smoke", "--trials", 1, "--method", "ce",
                             "--set", "optim.lr=1e8", "--storage", tmp_path / "r"),
                         env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 1 and "reported a usable result" in res.stderr
    _no_strays(env)
