"""`search --workers-per-trial N`: each trial a Ray Train group of N workers, on a real local Ray
(2 CPUs: one group of 2 workers × 1 CPU at a time), real Optuna and Parquet; and the bad input
that is refused in one line before anything runs."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from drivers import live_epochs

from dnet_tune.errors import UserError
from dnet_tune.fileio import table_to_rows
from dnet_tune.tune.plan import SearchRequest, group_slots, plan_resources
from dnet_tune.tune.trainable import epoch_row

TRIALS, EPOCHS = 2, 2


@pytest.fixture(scope="module")
def grouped(ray_local, tmp_path_factory, run_cli):
    """One smoke search of 2-worker trials with ASHA (a rung at epoch 1) and a confirmation.

    One group at a time, so ASHA sees results in a fixed order; with seed 2 the second trial's
    epoch 1 is below the first's (as in the same search with one worker per trial, which trains
    the same numbers), so ASHA stops it there."""
    storage = tmp_path_factory.mktemp("results")
    res = run_cli("search", "--dataset", "digits_lt", "--method", "ce", "--smoke",
                  "--trials", TRIALS, "--max-epochs", EPOCHS, "--grace-period", 1,
                  "--reduction-factor", 2, "--workers-per-trial", 2, "--cpus-per-trial", 1,
                  "--confirm-top", 1, "--confirm-seeds", 1, "--storage", storage,
                  "--name", "groups", "--seed", 2)
    return {"exp": storage / "groups", **res}


def test_group_trials_report_every_epoch_checkpoint_and_asha_stops_a_group(grouped):
    assert grouped["code"] == 0, grouped["err"]
    exp = grouped["exp"]
    summary = pq.read_table(exp / "summary.parquet").to_pylist()
    assert len(summary) == TRIALS
    statuses = sorted(r["status"] for r in summary)
    assert "errored" not in statuses, [r["error"] for r in summary]
    assert "stopped" in statuses and "finished" in statuses, statuses
    rows = table_to_rows(pq.read_table(exp / "trials.parquet"))
    for r in summary:
        epochs = [x["epoch"] for x in rows if x["trial_id"] == r["trial_id"]]
        assert epochs == list(range(1, r["last_epoch"] + 1))  # one report per epoch, rank 0's
        assert r["last_epoch"] == (EPOCHS if r["status"] == "finished" else 1)
        # rank 0's checkpoints, kept by Ray Train in the trial's folder (the trainer's own file)
        kept = [c for c in (exp / f"trial_{r['trial_id']}" / "train").glob("checkpoint_*")
                if c.is_dir()]
        assert kept and all((c / "checkpoint.pt").is_file() for c in kept)
        # beside it, the rows rank 0 had reported up to it: what a restarted group hands the
        # driver (tune/train_trial.py). The last checkpoint's begin with the table's rows (a
        # group ASHA stopped may have trained on: Tune withholds the result it stops on).
        last = max(kept, key=lambda c: json.loads((c / "reports.json").read_text())[-1]["epoch"])
        stored = [epoch_row(x) for x in json.loads((last / "reports.json").read_text())]
        table = [{k: v for k, v in x.items() if k in stored[0]}
                 for x in rows if x["trial_id"] == r["trial_id"]]
        assert stored[:len(table)] == table
        assert len(stored) == len(table) or r["status"] == "stopped"
    # what a one-worker trial reports, and no Ray Train bookkeeping in the table
    assert {"val_acc", "best_val_acc", "train_loss", "node_id", "host", "device"} <= set(rows[0])
    assert {r["host"] for r in rows} == {os.uname().nodename}  # rank 0's, as Ray's is dropped
    assert not {"checkpoint_path", "train_group"} & set(rows[0])


def test_search_json_records_the_group_and_confirmation_runs_use_it(grouped):
    assert grouped["code"] == 0, grouped["err"]
    exp = grouped["exp"]
    meta = json.loads((exp / "search.json").read_text())
    assert meta["resources"]["workers_per_trial"] == 2
    assert meta["resources"]["placement"] == "pack"
    assert meta["resources"]["slots"] == 1  # 2 CPUs hold one group of 2 × 1 CPU
    assert meta["request"]["workers_per_trial"] == 2
    confirm = pq.read_table(exp / "confirm.parquet").to_pylist()
    assert len(confirm) == 1 and confirm[0]["error"] == ""
    assert confirm[0]["epochs"] == EPOCHS and confirm[0]["test_acc"] is not None
    runs = list((exp / "confirm_runs").iterdir())
    assert len(runs) == 1  # the confirmation ran as a Ray Train group of its own


def test_a_group_larger_than_the_node_is_one_line(ray_local, cli, one_line_error, tmp_path):
    code, _, err = cli("search", "--dataset", "digits_lt", "--method", "ce", "--smoke",
                       "--workers-per-trial", 4, "--cpus-per-trial", 1, "--no-confirm",
                       "--storage", tmp_path, "--name", "big")
    one_line_error(code, err, "--workers-per-trial 4", "does not fit on one node",
                   "--placement spread")
    code, _, err = cli("search", "--dataset", "digits_lt", "--method", "ce", "--smoke",
                       "--workers-per-trial", 4, "--placement", "spread", "--no-confirm",
                       "--storage", tmp_path, "--name", "big")
    one_line_error(code, err, "--workers-per-trial 4", "does not fit on the cluster")
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize(("argv", "needles"), [
    (["--workers-per-trial", 0], ["--workers-per-trial must be >= 1"]),
    (["--workers-per-trial", 2, "--set", "method.meta_impl=reference"],
     ["method.meta_impl", "--workers-per-trial"]),
    (["--workers-per-trial", 2, "--set", "data.batch_size=33"],
     ["data.batch_size=33", "--workers-per-trial 2"]),
    (["--workers-per-trial", 2, "--set", "train.workers=3"],
     ["train.workers=3", "--workers-per-trial 2"]),
])
def test_bad_group_input_is_one_line_before_ray_starts(cli, one_line_error, tmp_path, argv,
                                                         needles):
    code, _, err = cli("search", "--dataset", "digits_lt", "--method", "difficulty_net",
                       "--smoke", "--no-confirm", "--storage", tmp_path, "--name", "bad", *argv)
    one_line_error(code, err, *needles)
    assert not (tmp_path / "bad").exists()


def _req(n: int, placement: str = "pack", cpus: float = 1.0) -> SearchRequest:
    return SearchRequest(workers_per_trial=n, placement=placement, cpus_per_trial=cpus)


def test_group_slots_per_node_for_pack_and_spread():
    two_nodes = [{"CPU": 2.0}, {"CPU": 2.0}]
    assert group_slots(_req(2), 0.0, two_nodes) == 2  # one group on each node
    with pytest.raises(UserError, match="does not fit on one node"):
        group_slots(_req(3), 0.0, two_nodes)
    assert group_slots(_req(3, "spread"), 0.0, two_nodes) == 1  # 2 + 1 across nodes
    with pytest.raises(UserError, match="fits on no node"):
        group_slots(_req(2, "spread", cpus=4.0), 0.0, two_nodes)
    gpu_nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]
    with pytest.raises(UserError, match="the largest holds 1"):  # more workers than a node's GPUs
        group_slots(_req(2), 1.0, gpu_nodes)
    assert group_slots(_req(2, "spread"), 1.0, gpu_nodes) == 1


def test_a_slot_is_a_group_and_one_worker_keeps_todays_slots():
    cluster = {"CPU": 8.0, "GPU": 4.0}
    assert plan_resources(_req(1), cluster).slots == 4
    res = plan_resources(_req(2), cluster, [cluster])
    assert (res.slots, res.workers_per_trial, res.gpus_per_group) == (2, 2, 2.0)
    assert vars(plan_resources(_req(1), cluster)) == {
        "gpus": 4.0, "gpus_per_trial": 1.0, "cpus_per_trial": 1.0, "slots": 4,
        "workers_per_trial": 1, "placement": "pack"}


def _train_workers_of(ray_dir: str) -> list[int]:
    """The pids of this test Ray's Ray Train workers: each Ray process inherits
    DNET_RAY_TEMP_DIR from the fixture (other Rays on the machine have their own)."""
    mark = f"DNET_RAY_TEMP_DIR={ray_dir}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if b"RayTrainWorker" in cmd and mark in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _kill_a_group_worker(ray_dir: str, last: int, killed: dict, stop: threading.Event) -> None:
    """SIGKILL one worker of the group of experiment "kill" once the driver has its epoch 2
    (so a registered checkpoint exists) and before its epoch `last` (its workers are looked up
    while it trains its first epochs: a /proc scan is slower than an epoch)."""
    pids: list[int] = []
    while not stop.is_set():
        if not pids:
            pids = _train_workers_of(ray_dir)
        for tid, n in live_epochs(ray_dir, "kill").items():
            if 2 <= n <= last and pids:
                os.kill(pids[-1], signal.SIGKILL)
                killed.update(trial=tid, pid=pids[-1])
                return
        time.sleep(0.02)


def test_a_killed_group_worker_retries_the_trial_from_its_checkpoint(ray_local, run_cli,
                                                                      tmp_path):
    storage, epochs = tmp_path / "results", 10
    exp = storage / "kill"
    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_group_worker,
                              args=(os.environ["DNET_RAY_TEMP_DIR"], epochs - 3, killed, stop),
                              daemon=True)
    killer.start()
    try:
        res = run_cli("search", "--dataset", "digits_lt", "--method", "ce", "--smoke",
                      "--trials", 1, "--max-epochs", epochs, "--grace-period", epochs,
                      "--workers-per-trial", 2, "--no-confirm", "--storage", storage,
                      "--name", "kill", "--seed", 0)
    finally:
        stop.set()
        killer.join()
    assert res["code"] == 0, res["err"]
    assert killed, "no group worker was caught mid-trial: nothing was killed"
    assert "lost its worker; retrying from its last checkpoint" in res["out"]
    (row,) = pq.read_table(exp / "summary.parquet").to_pylist()
    assert (row["status"], row["last_epoch"]) == ("finished", epochs)
    reported = [json.loads(x)["epoch"]
                for x in (exp / f"trial_{killed['trial']}" / "result.json").read_text()
                .splitlines()]
    # the retry continued from a checkpoint, not from scratch
    assert reported[:2] == [1, 2] and reported[-1] == epochs
    assert reported.count(1) == 1, reported
    rows = table_to_rows(pq.read_table(exp / "trials.parquet"))
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
