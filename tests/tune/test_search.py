"""`search`, `export`, `report` end to end on a real local Ray (2 CPUs), Optuna and Parquet."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from dnet_tune.errors import UserError
from dnet_tune.tune.preflight import check_reachable, version_mismatch

TRIALS, EPOCHS = 6, 4
METRICS = ["epoch", "lr", "train_loss", "val_acc", "val_many", "val_medium", "val_few", "test_acc",
           "test_many", "test_medium", "test_few", "epoch_time_s", "class_acc_meta", "difficulty",
           "class_weight", "node_id", "device"]


@pytest.fixture(scope="module")
def smoke(ray_local, tmp_path_factory, run_cli):
    """One smoke search shared by the tests below.

    `--cpus-per-trial 2` on the 2-CPU Ray runs one trial at a time: the order in which ASHA sees
    results is then fixed, so the search is deterministic and ASHA's early stop is certain.
    """
    storage = tmp_path_factory.mktemp("results")
    code = run_cli(
        "search", "--dataset", "digits_lt", "--smoke", "--trials", TRIALS, "--max-epochs",
        EPOCHS, "--grace-period", 1, "--cpus-per-trial", 2, "--storage", storage,
        "--name", "smoke", "--seed", 0,
    )
    return {"storage": storage, "exp": storage / "smoke", **code}


def test_search_writes_results_and_asha_stops_early(smoke):
    assert smoke["code"] == 0, smoke["err"]
    exp = smoke["exp"]
    summary = pq.read_table(exp / "summary.parquet").to_pylist()
    search = [r for r in summary if r["role"] == "search"]
    baseline = [r for r in summary if r["role"] == "baseline"]
    assert len(search) == TRIALS
    assert len(baseline) == 1 and baseline[0]["status"] == "finished"
    statuses = [r["status"] for r in search]
    assert set(statuses) <= {"finished", "stopped", "errored"}
    assert "errored" not in statuses, [r["error"] for r in search]
    assert statuses.count("stopped") >= 1, statuses
    assert statuses.count("finished") >= 1, statuses
    for r in search:
        if r["status"] == "stopped":
            assert r["last_epoch"] < EPOCHS
        else:
            assert r["last_epoch"] == EPOCHS
        assert 1 <= r["best_epoch"] <= r["last_epoch"]
        assert 0.0 <= r["best_val_acc"] <= 1.0

    trials = pq.read_table(exp / "trials.parquet")
    assert set(METRICS) <= set(trials.column_names)
    assert any(c.startswith("config/dn.") for c in trials.column_names)
    rows = trials.to_pylist()
    for r in search:
        epochs = [x["epoch"] for x in rows if x["trial_id"] == r["trial_id"]]
        assert epochs == list(range(1, r["last_epoch"] + 1))
        best = max(x["val_acc"] for x in rows if x["trial_id"] == r["trial_id"])
        assert best == r["best_val_acc"]
    dn_rows = [x for x in rows if x["role"] == "search"]
    assert all(len(x["difficulty"]) == 10 and len(x["class_weight"]) == 10 for x in dn_rows)
    assert all(x["device"] == "cpu" and x["node_id"] for x in rows)

    meta = json.loads((exp / "search.json").read_text())
    assert meta["budget"]["trials"] == TRIALS and meta["resources"]["slots"] == 1
    assert meta["peak_running_trials"] == 1


def test_search_prints_top_trials_beside_the_baseline(smoke):
    out = smoke["out"]
    assert "top trials" in out and "baseline" in out and "best: trial" in out
    assert len(out.splitlines()) < 60  # our table, not Ray's per-trial status dump


def test_best_config_has_provenance_and_matches_the_summary(smoke):
    exp = smoke["exp"]
    best = yaml.safe_load((exp / "best_config.yaml").read_text())
    summary = pq.read_table(exp / "summary.parquet").to_pylist()
    top = max((r for r in summary if r["role"] == "search"), key=lambda r: r["best_val_acc"])
    prov = best["provenance"]
    assert prov["trial_id"] == top["trial_id"]
    assert prov["val_acc"] == top["best_val_acc"] and prov["epoch"] == top["best_epoch"]
    assert prov["seed"] == 0 and "ray" in prov["versions"]
    assert best["method"]["name"] == "difficulty_net" and best["train"]["epochs"] == EPOCHS


def test_export_then_train_reproduces_the_best_val_acc(smoke, run_cli, tmp_path):
    out_yaml = tmp_path / "best.yaml"
    res = run_cli("export", smoke["exp"], "--out", out_yaml)
    assert res["code"] == 0, res["err"]
    prov = yaml.safe_load(out_yaml.read_text())["provenance"]
    run = tmp_path / "run"
    res = run_cli("train", "--config", out_yaml, "--output", run)
    assert res["code"] == 0, res["err"]
    metrics = pq.read_table(run / "metrics.parquet").to_pylist()
    at_epoch = next(m for m in metrics if m["epoch"] == prov["epoch"])
    assert at_epoch["val_acc"] == prov["val_acc"]  # exact: same config, seed, CPU


def test_export_a_named_trial_and_bad_trial(smoke, run_cli, tmp_path):
    summary = pq.read_table(smoke["exp"] / "summary.parquet").to_pylist()
    worst = min((r for r in summary if r["role"] == "search"), key=lambda r: r["best_val_acc"])
    out_yaml = tmp_path / "t.yaml"
    res = run_cli("export", smoke["exp"], "--out", out_yaml, "--trial", worst["trial_id"])
    assert res["code"] == 0
    assert yaml.safe_load(out_yaml.read_text())["provenance"]["trial_id"] == worst["trial_id"]
    res = run_cli("export", smoke["exp"], "--out", tmp_path / "x.yaml", "--trial", "nope")
    assert res["code"] == 2 and "no trial 'nope'" in res["err"]
    assert not (tmp_path / "x.yaml").exists()
    res = run_cli("export", tmp_path / "missing", "--out", tmp_path / "y.yaml")
    assert res["code"] == 2 and len(res["err"].strip().splitlines()) == 1
    assert not (tmp_path / "y.yaml").exists()


def test_report_json_lists_the_best_per_dataset(smoke, run_cli):
    res = run_cli("report", "--storage", smoke["storage"], "--json")
    assert res["code"] == 0
    rows = json.loads(res["out"])
    assert [r["dataset"] for r in rows] == ["digits_lt"]
    best = yaml.safe_load((smoke["exp"] / "best_config.yaml").read_text())["provenance"]
    assert rows[0]["val_acc"] == best["val_acc"] and rows[0]["trial_id"] == best["trial_id"]
    assert rows[0]["baseline_test_acc"] is not None
    res = run_cli("report", "--storage", smoke["storage"])
    assert "digits_lt" in res["out"]


def test_same_name_twice_is_refused(smoke, run_cli):
    res = run_cli("search", "--smoke", "--storage", smoke["storage"], "--name", "smoke")
    assert res["code"] == 2 and "already exists" in res["err"]


BAD = [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--space", "{space}"], "budget.trials"),
    (["--gpus", "1"], "more GPUs than the cluster has"),
    (["--gpus-per-trial", "0"], "--gpus-per-trial"),
    (["--gpus-per-trial", "1.5"], "--gpus-per-trial"),
    (["--cpus-per-trial", "4"], "--cpus-per-trial"),
    (["--trials", "0"], "--trials"),
    (["--method", "magic"], "magic"),
    (["--wait-for-gpus", "30"], "--wait-for-gpus needs --gpus"),
    (["--dataset", "cifar10_lt", "--data-dir", "/nonexistent/dir"], "/nonexistent/dir"),
    (["--set", "method.lamda=1"], "method.lamda"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD)
def test_bad_input_is_one_line_and_writes_nothing(ray_local, cli, one_line_error, tmp_path,
                                                   argv, needle):
    space = tmp_path / "bad.yaml"
    space.write_text("budget: {trials: 0, max_epochs: 2, grace_period: 1, reduction_factor: 2}\n")
    storage = tmp_path / "results"
    argv = [a.replace("{space}", str(space)) for a in argv]
    code, _, err = cli("search", *argv, "--smoke", "--storage", storage, "--name", "x")
    one_line_error(code, err, needle)
    assert not storage.exists()


def test_unreachable_address_fails_fast(cli, one_line_error, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = cli("search", "--smoke", "--address", f"127.0.0.1:{port}",
                       "--storage", tmp_path / "r")
    one_line_error(code, err, "cannot reach the Ray cluster", str(port))
    assert not (tmp_path / "r").exists()
    with pytest.raises(UserError, match="host:port"):
        check_reachable("ray://:10001")


def test_version_mismatch_is_one_line_naming_what_differs():
    """Ray's own check produces the message; we turn it into one actionable line."""
    from ray._private.utils import check_version_info

    with pytest.raises(RuntimeError) as info:
        check_version_info({"ray_version": "2.9.0", "python_version": "3.10.4"}, "test driver")
    err = version_mismatch(str(info.value), "10.0.0.1:6379")
    assert err is not None
    msg = str(err)
    assert "\n" not in msg
    assert "Ray" in msg and "2.9.0" in msg and "3.10.4" in msg
    assert "pip install 'ray[tune]==2.9.0'" in msg
    assert version_mismatch("some other failure", "x") is None


def test_a_trial_without_a_ray_gpu_runs_on_cpu(ray_local):
    """Even on a node with CUDA: a worker Ray gave no GPU must not take one."""
    from dnet_tune.tune.trainable import device_for_ray_worker

    task = ray_local.remote(device_for_ray_worker).options(num_cpus=1, num_gpus=0)
    assert ray_local.get(task.remote()) == "cpu"


def test_set_fixes_a_searched_parameter_in_every_trial(ray_local, cli, tmp_path):
    code, out, err = cli("search", "--smoke", "--trials", 2, "--max-epochs", 1, "--no-baseline",
                         "--set", "optim.lr=0.07", "--storage", tmp_path, "--name", "pin")
    assert code == 0, err
    assert "fixed by --set, not searched: optim.lr" in out
    summary = pq.read_table(tmp_path / "pin" / "summary.parquet").to_pylist()
    assert len(summary) == 2
    for r in summary:
        assert yaml.safe_load(r["config_yaml"])["optim"]["lr"] == 0.07
        assert r.get("config/optim.lr") is None


def test_failing_trials_are_recorded_and_the_search_exits_non_zero(ray_local, cli, tmp_path):
    code, out, err = cli("search", "--smoke", "--trials", 2, "--no-baseline", "--set",
                         "optim.lr=1e8", "--storage", tmp_path, "--name", "nan")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "FloatingPointError: training loss became nan" in lines[0]
    assert out.count("failed: FloatingPointError") == 2 and "Traceback" not in out + err
    summary = pq.read_table(tmp_path / "nan" / "summary.parquet").to_pylist()
    assert [r["status"] for r in summary] == ["errored", "errored"]
    assert all("nan at epoch 1" in r["error"] for r in summary)
    assert all((tmp_path / "nan" / f"trial_{r['trial_id']}" / "error.txt").is_file()
               for r in summary)
