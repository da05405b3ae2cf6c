"""Trial faults on a real local Ray: a trial whose worker process is killed mid-search resumes
from its last checkpoint, and its epochs are exactly those of an uninterrupted run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
from study_states import assert_studies_mirror

from dnet_tune.fileio import table_to_rows

EPOCHS = 8
# what differs between two runs of one config by nature: time and place
NOT_COMPARED = {"epoch_time_s", "node_id", "host", "device", "diverged"}


def _reports(result_json: Path) -> list[dict]:
    """Ray's per-trial result log; a line being written right now is skipped."""
    out = []
    for line in result_json.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def _kill_a_worker_mid_trial(exp: Path, killed: dict, stop: threading.Event) -> None:
    """SIGKILL the worker process of the first trial seen between epochs 2 and 5.

    The trial's actor pid comes from its own reports (Ray adds `pid` to every result): Ray's
    state API needs the dashboard, which the test Ray runs without.
    """
    while not stop.is_set():
        for f in exp.glob("trial_*/result.json"):
            reports = _reports(f)
            if reports and 2 <= reports[-1]["epoch"] <= 5:
                killed.update(trial=f.parent.name.removeprefix("trial_"),
                              pid=reports[-1]["pid"], epoch=reports[-1]["epoch"])
                os.kill(reports[-1]["pid"], signal.SIGKILL)
                return
        time.sleep(0.02)


def test_a_killed_trial_worker_resumes_from_its_checkpoint_with_identical_metrics(
        ray_local, run_cli, tmp_path):
    storage = tmp_path / "results"
    exp = storage / "kill"
    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_worker_mid_trial, args=(exp, killed, stop),
                              daemon=True)
    killer.start()
    try:
        # one trial at a time (2 CPUs each) and no ASHA stop (grace = max epochs)
        res = run_cli("search", "--method", "difficulty_net", "--smoke", "--trials", 2,
                      "--max-epochs", EPOCHS, "--grace-period", EPOCHS, "--cpus-per-trial", 2,
                      "--no-confirm", "--storage", storage, "--name", "kill", "--seed", 0)
    finally:
        stop.set()
        killer.join()
    assert res["code"] == 0, res["err"]
    assert killed, "no trial was caught mid-run: nothing was killed"
    trial = killed["trial"]

    # the kill really hit the trial: its later epochs came from another worker process
    pids = {r["epoch"]: r["pid"] for r in _reports(exp / f"trial_{trial}" / "result.json")}
    assert pids[EPOCHS] != killed["pid"] and pids[1] == killed["pid"]
    assert "lost its worker; retrying from its last checkpoint" in res["out"]

    summary = {r["trial_id"]: r for r in pq.read_table(exp / "summary.parquet").to_pylist()}
    assert summary[trial]["status"] == "finished" and summary[trial]["last_epoch"] == EPOCHS
    rows = [r for r in table_to_rows(pq.read_table(exp / "trials.parquet"))
            if r["trial_id"] == trial]
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))  # contiguous, unique
    # its study record too: one step per epoch, the replayed ones once, and COMPLETE
    assert assert_studies_mirror(exp) == {"COMPLETE": 2}

    # the same config and seed trained without interruption, outside Ray
    cfg = tmp_path / "trial.yaml"
    assert run_cli("export", exp, "--trial", trial, "--out", cfg)["code"] == 0
    run = tmp_path / "run"
    assert run_cli("train", "--config", cfg, "--output", run, "--quiet")["code"] == 0
    plain = table_to_rows(pq.read_table(run / "metrics.parquet"))
    assert len(plain) == EPOCHS
    for searched, uninterrupted in zip(rows, plain, strict=True):
        keys = set(uninterrupted) - NOT_COMPARED
        assert {k: searched[k] for k in keys} == {k: uninterrupted[k] for k in keys}, \
            searched["epoch"]


def test_many_quick_asha_stops_with_reused_actors_error_no_trial(ray_local, run_cli, tmp_path):
    """ray#29268: a reused actor may fail the next trial while the stopped trial's training
    thread is still alive (Tune waits 2 s). Many trials stopped at the first rung, two at a
    time on reused workers: none may error."""
    res = run_cli("search", "--method", "ce", "--smoke", "--trials", 24, "--max-epochs", 3,
                  "--grace-period", 1, "--reduction-factor", 4, "--no-confirm",
                  "--storage", tmp_path, "--name", "reuse", "--seed", 0)
    assert res["code"] == 0, res["err"]
    exp = tmp_path / "reuse"
    summary = pq.read_table(exp / "summary.parquet").to_pylist()
    assert len(summary) == 24
    statuses = [r["status"] for r in summary]
    assert "errored" not in statuses, [r["error"] for r in summary if r["error"]]
    assert statuses.count("stopped") >= 6, statuses  # ASHA really cut trials short
    assert assert_studies_mirror(exp)["PRUNED"] == statuses.count("stopped")
    pids = {rep["pid"] for f in exp.glob("trial_*/result.json") for rep in _reports(f)}
    assert len(pids) <= 6, pids  # the workers really were reused (2 slots, 24 trials)
