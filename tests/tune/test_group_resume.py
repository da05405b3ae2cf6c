"""`search --resume` of a search of 2-worker trials (`--workers-per-trial 2`) whose driver got a
Ctrl-C or a kill -9 while a group trained: the finished trial is kept, the interrupted group
continues from its last checkpoint, the studies mirror the search, and no placement group or
Ray Train worker outlives it.

The signal goes to a real subprocess driver (its own local Ray, reaped before the resume); the
resume then runs in-process on this module's `ray_local` (idle while the next case's driver
runs), so its placement groups and workers can be looked at once it has ended."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from drivers import MARK, driver_env, ended_trials, live_epochs, start, trial_rows, wait_until
from drivers import wait_until_reaped as reaped
from study_states import assert_studies_mirror
from test_group_trials import _train_workers_of

TRIALS, EPOCHS = 2, 10


def _epochs(exp: Path, tid: str) -> list[int]:
    """The epochs a trial reported to Tune, in order, as of Tune's last experiment snapshot
    (Ray's result.json, one line each, is synced to the storage with each snapshot)."""
    f = exp / f"trial_{tid}" / "result.json"
    return [json.loads(x)["epoch"] for x in f.read_text().splitlines() if x.endswith("}")]


def _running(exp: Path, ray_dir: Path, least: int) -> str | None:
    """A trial that has reported `least` epochs or more to the driver, not its last ones, and
    has not ended."""
    ended = ended_trials(exp)
    for tid, n in live_epochs(ray_dir, "g").items():
        if tid not in ended and least <= n <= EPOCHS - 3:
            return tid
    return None


def _ahead_of_snapshot(exp: Path, ray_dir: Path, by: int) -> str | None:
    """A running trial of which the driver has received `by` epochs more than Tune's last
    experiment snapshot holds (the storage's result.json: see `_epochs`), with an epoch left: a
    kill -9 now leaves the group's checkpoint ahead of the rows the driver saved."""
    ended, live = ended_trials(exp), live_epochs(ray_dir, "g")
    for d in exp.glob("trial_*"):
        tid = d.name.removeprefix("trial_")
        if tid in ended:
            continue
        saved = len(_epochs(exp, tid)) if (d / "result.json").is_file() else 0
        if saved + by <= live.get(tid, 0) <= EPOCHS - 1:
            return tid
    return None


# ~2 x 100 s of group trials: outside CI's ~10 minutes (`pytest -m slow` runs it).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["ctrl-c", "kill-9"])
def paused(request, tmp_path_factory):
    """The driver stopped once the first trial had finished and the second had reported an
    epoch: a Ctrl-C (the group stops at its epoch's end), or a kill -9 (it dies mid-epoch) once
    the group's checkpoints are two epochs ahead of Tune's last experiment snapshot (where the
    driver's rows of the trial live; fixed defect: those epochs went missing from
    trials.parquet)."""
    tmp = tmp_path_factory.mktemp("paused")
    env = driver_env(tmp_path_factory)
    exp = tmp / "results" / "g"
    proc = start(env, "search", "--dataset", "digits_lt", "--method", "ce", "--smoke",
                 "--trials", TRIALS, "--max-epochs", EPOCHS, "--grace-period", EPOCHS,
                 "--workers-per-trial", 2, "--cpus-per-trial", 1, "--no-confirm",
                 "--storage", tmp / "results", "--name", "g", "--seed", 0,
                 log=tmp / "driver.log")
    try:
        first = lambda: len(ended_trials(exp)) == 1  # noqa: E731
        ray_dir = Path(env["DNET_RAY_TEMP_DIR"])
        if request.param == "ctrl-c":
            wait_until(lambda: first() and _running(exp, ray_dir, 1), timeout=400, proc=proc,
                       poll=0.05)
        else:
            wait_until(lambda: first() and _ahead_of_snapshot(exp, ray_dir, by=2),
                       timeout=400, proc=proc, poll=0.05)
        proc.send_signal(signal.SIGINT if request.param == "ctrl-c" else signal.SIGKILL)
        code = proc.wait(timeout=300)
    finally:
        proc.kill()
        proc.wait()
    log = (tmp / "driver.log").read_text()
    assert code == (130 if request.param == "ctrl-c" else -9) and "Traceback" not in log, log
    if request.param == "ctrl-c":
        assert "stops at the end of its current epoch" in log, log
    reaped(env[MARK])
    (done,) = ended_trials(exp)
    (tid,) = {f.name.removeprefix("trial_") for f in exp.glob("trial_*")} - {done}
    return {"exp": exp, "how": request.param, "done": done, "paused": tid,
            "done_rows": [r for r in trial_rows(exp) if r["trial_id"] == done],
            "paused_epochs": _epochs(exp, tid)}


@pytest.fixture(scope="module")
def resumed(paused, ray_local, run_cli):
    res = run_cli("search", "--resume", paused["exp"])
    assert res["code"] == 0, res["out"] + res["err"]
    return {**paused, "out": res["out"]}


def test_the_paused_group_continues_from_its_checkpoint(resumed):
    exp, tid = resumed["exp"], resumed["paused"]
    before = resumed["paused_epochs"]
    # (after a kill -9: the epochs of Tune's last snapshot, which may hold none of them)
    assert len(before) < EPOCHS and before == list(range(1, len(before) + 1))
    # Tune starts the trial's function again (its result.json anew) and the group's new
    # TorchTrainer goes on from the run's last checkpoint, not from epoch 1
    after = _epochs(exp, tid)
    assert after[0] > 1 and after == list(range(after[0], EPOCHS + 1)), (before, after)
    if resumed["how"] == "ctrl-c":  # it stopped at an epoch's end, with that epoch's checkpoint
        assert before and after[0] == len(before) + 1, (before, after)
    ended = ended_trials(exp)
    assert {r["status"] for r in ended.values()} == {"finished"} and len(ended) == TRIALS
    rows = trial_rows(exp)
    assert [r["epoch"] for r in rows if r["trial_id"] == tid] == list(range(1, EPOCHS + 1))
    if resumed["how"] == "kill-9":  # the epochs between the snapshot and the checkpoint: filled
        assert f"trial {tid}: epochs " in resumed["out"], resumed["out"]
        assert "recorded from its group's checkpoint" in resumed["out"], resumed["out"]
    # the trial that had finished is kept as it was, not run again
    assert [r for r in rows if r["trial_id"] == resumed["done"]] == resumed["done_rows"]
    assert assert_studies_mirror(exp) == {"COMPLETE": TRIALS}
    assert json.loads((exp / "search.json").read_text())["status"] == "finished"


def test_no_group_or_train_worker_outlives_the_resumed_search(resumed, ray_local):
    groups = ray_local.util.placement_group_table().values()
    assert groups  # the resumed group had one
    left = [g for g in groups if g["state"] != "REMOVED"]
    assert not left, left
    # Ray Train workers of this module's Ray (whose processes inherit its DNET_RAY_TEMP_DIR)
    wait_until(lambda: not _train_workers_of(os.environ["DNET_RAY_TEMP_DIR"]), timeout=30)
