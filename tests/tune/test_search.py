"""`search`, `export`, `report` end to end on a real local Ray (2 CPUs), Optuna and Parquet."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
import yaml
from study_states import assert_studies_mirror

from dnet_tune.errors import UserError
from dnet_tune.fileio import table_to_rows
from dnet_tune.tune.preflight import check_reachable, version_mismatch

TRIALS, EPOCHS, TOP, SEEDS = 6, 4, 2, 2
METHODS = ["difficulty_net", "cdb_ce"]  # cdb_ce: a categorical mixing numbers and "dynamic"
METRICS = ["epoch", "lr", "train_loss", "val_acc", "val_many", "val_medium", "val_few", "test_acc",
           "test_many", "test_medium", "test_few", "epoch_time_s", "class_acc_meta", "difficulty",
           "class_weight", "node_id", "host", "device"]


@pytest.fixture(scope="module")
def smoke(ray_local, tmp_path_factory, run_cli):
    """One smoke search of two methods, confirmed, shared by the tests below.

    `--cpus-per-trial 2` on the 2-CPU Ray runs one trial at a time: the order in which ASHA sees
    results is then fixed, so the search is deterministic and ASHA's early stop is certain.
    """
    storage = tmp_path_factory.mktemp("results")
    code = run_cli(
        "search", "--dataset", "digits_lt", "--methods", ",".join(METHODS), "--smoke",
        "--trials", TRIALS, "--max-epochs", EPOCHS, "--grace-period", 1, "--cpus-per-trial", 2,
        "--confirm-top", TOP, "--confirm-seeds", SEEDS, "--storage", storage, "--name", "smoke",
        "--seed", 0,
    )
    return {"storage": storage, "exp": storage / "smoke", **code}


def _summary(exp):
    return pq.read_table(exp / "summary.parquet").to_pylist()


def test_search_writes_results_and_asha_stops_early(smoke):
    assert smoke["code"] == 0, smoke["err"]
    exp = smoke["exp"]
    summary = _summary(exp)
    assert sorted({r["method"] for r in summary}) == sorted(METHODS)
    for method in METHODS:
        statuses = [r["status"] for r in summary if r["method"] == method]
        assert len(statuses) == TRIALS
        assert set(statuses) <= {"finished", "stopped", "errored"}
        assert "errored" not in statuses, [r["error"] for r in summary]
        assert statuses.count("stopped") >= 1, (method, statuses)
        assert statuses.count("finished") >= 1, (method, statuses)
    for r in summary:
        if r["status"] == "stopped":
            assert r["last_epoch"] < EPOCHS
        else:
            assert r["last_epoch"] == EPOCHS
        assert 1 <= r["best_epoch"] <= r["last_epoch"]
        assert 0.0 <= r["best_val_acc"] <= 1.0

    trials = pq.read_table(exp / "trials.parquet")
    assert set(METRICS) <= set(trials.column_names)
    assert {"method", "config/method.name"} <= set(trials.column_names)
    assert any(c.startswith("config/dn.") for c in trials.column_names)
    rows = table_to_rows(trials)
    for r in summary:
        epochs = [x["epoch"] for x in rows if x["trial_id"] == r["trial_id"]]
        assert epochs == list(range(1, r["last_epoch"] + 1))
        best = max(x["val_acc"] for x in rows if x["trial_id"] == r["trial_id"])
        assert best == r["best_val_acc"]
    dn_rows = [x for x in rows if x["method"] == "difficulty_net"]
    assert dn_rows and all(len(x["difficulty"]) == 10 and len(x["class_weight"]) == 10
                           for x in dn_rows)
    taus = {x["config/method.cdb_tau"] for x in rows if x["method"] == "cdb_ce"}
    assert taus and taus <= {0.5, 1.0, 1.5, 2.0, 5.0, "dynamic"}  # each value with its own type
    assert all(x["device"] == "cpu" and x["node_id"] and x["host"] == os.uname().nodename
               for x in rows)

    meta = json.loads((exp / "search.json").read_text())
    assert meta["budget"]["trials"] == TRIALS and meta["resources"]["slots"] == 1
    assert meta["peak_running_trials"] == 1


def test_every_method_gets_the_same_budget(smoke):
    exp = smoke["exp"]
    meta = json.loads((exp / "search.json").read_text())
    summary = _summary(exp)
    assert meta["methods"] == METHODS
    for method in METHODS:
        spent = meta["compute"][method]
        assert spent["trials"] == TRIALS == sum(r["method"] == method for r in summary)
        assert spent["confirm_runs"] == TOP * SEEDS
        assert spent["trial_seconds"] > 0 and spent["confirm_seconds"] > 0
        assert spent["trial_epochs"] == sum(r["last_epoch"] for r in summary
                                            if r["method"] == method)
    # the same budget, resources and seeds for every method: one set in the file
    assert meta["confirm"] == {"top": TOP, "seeds": [1, 2]}


def test_confirmation_retrains_the_top_k_with_s_seeds(smoke):
    exp = smoke["exp"]
    confirm = table_to_rows(pq.read_table(exp / "confirm.parquet"))
    summary = _summary(exp)
    for method in METHODS:
        rows = [r for r in confirm if r["method"] == method]
        assert len(rows) == TOP * SEEDS
        assert sorted({r["seed"] for r in rows}) == [1, 2]
        ranked = sorted((r for r in summary if r["method"] == method),
                        key=lambda r: (-r["best_val_acc"], r["best_epoch"], r["trial_index"]))
        assert {r["trial_id"] for r in rows} == {r["trial_id"] for r in ranked[:TOP]}
        for r in rows:
            assert 1 <= r["selected_epoch"] <= EPOCHS and r["epochs"] == EPOCHS
            for key in ("val_acc", "test_acc", "test_many", "test_medium", "test_few"):
                assert 0.0 <= r[key] <= 1.0


def test_each_method_chooses_its_best_mean_val_config(smoke):
    exp = smoke["exp"]
    confirm = table_to_rows(pq.read_table(exp / "confirm.parquet"))
    for method in METHODS:
        means: dict[str, list[float]] = {}
        for r in confirm:
            if r["method"] == method:
                means.setdefault(r["trial_id"], []).append(r["val_acc"])
        best_mean = max(sum(v) / len(v) for v in means.values())
        chosen = yaml.safe_load((exp / "best" / f"{method}.yaml").read_text())["provenance"]
        assert sum(means[chosen["trial_id"]]) / SEEDS == pytest.approx(best_mean)
        assert chosen["val_mean"] == pytest.approx(best_mean)
        tests = [r["test_acc"] for r in confirm
                 if r["method"] == method and r["trial_id"] == chosen["trial_id"]]
        assert chosen["test_mean"] == pytest.approx(sum(tests) / SEEDS)
        assert chosen["seeds"] == [1, 2] and chosen["confirmed"] is True
    winner = yaml.safe_load((exp / "best_config.yaml").read_text())["provenance"]
    by_method = {m: yaml.safe_load((exp / "best" / f"{m}.yaml").read_text())["provenance"]
                 for m in METHODS}
    assert winner["val_mean"] == max(p["val_mean"] for p in by_method.values())


def test_each_study_is_told_the_trials_best_val(smoke):
    """One number for a trial: the value in its Optuna study (what TPE and optuna-dashboard
    see) is the summary's best_val_acc, not its last epoch's val_acc."""
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(smoke["exp"] / "optuna.journal")))
    summary = {r["trial_id"]: r for r in _summary(smoke["exp"])}
    rows = table_to_rows(pq.read_table(smoke["exp"] / "trials.parquet"))
    fell_back = 0
    for method in METHODS:
        study = optuna.load_study(study_name=f"smoke:{method}", storage=storage)
        for t in study.trials:
            trial = summary[t.user_attrs["ray_trial_id"]]
            assert t.value == trial["best_val_acc"], (t.number, t.value, trial)
            last = [x for x in rows if x["trial_id"] == trial["trial_id"]][-1]
            fell_back += last["val_acc"] < trial["best_val_acc"]
    assert fell_back  # trials whose last epoch is not their best: where the two differed


def test_each_study_mirrors_the_search(smoke):
    """Issue 20: a trial ASHA stopped is PRUNED in its study (it used to be COMPLETE, ranked by
    TPE like a final result), one that ran every epoch COMPLETE; every trial has one
    intermediate value per epoch it ran, the last one included (it never reached the
    searcher's per-epoch hook: Tune withholds a result on which the trial is stopped)."""
    seen = assert_studies_mirror(smoke["exp"])
    summary = _summary(smoke["exp"])
    assert seen["PRUNED"] == sum(r["status"] == "stopped" for r in summary) >= len(METHODS)
    assert seen["COMPLETE"] == sum(r["status"] == "finished" for r in summary) >= len(METHODS)
    meta = json.loads((smoke["exp"] / "search.json").read_text())
    assert meta["optuna_trials"] == {
        m: {s: n for s, n in (("COMPLETE", sum(r["method"] == m and r["status"] == "finished"
                                               for r in summary)),
                              ("PRUNED", sum(r["method"] == m and r["status"] == "stopped"
                                             for r in summary))) if n} for m in METHODS}


def test_search_prints_the_comparison_with_intervals(smoke):
    out = smoke["out"]
    assert "test ±95%CI" in out and "confirming the top 2 of each method" in out
    chosen = yaml.safe_load((smoke["exp"] / "best" / "difficulty_net.yaml").read_text())
    base = chosen["method"]["base_loss"]  # DN's label names a base loss other than CE
    label = "difficulty_net" if base == "ce" else f"difficulty_net (+{base})"
    words = " ".join(out.split())
    assert f"{label} − cdb_ce (best baseline by val) on test" in words
    assert "paired over seeds 1, 2" in words
    assert len(out.splitlines()) < 60  # our table, not Ray's per-trial status dump


@pytest.mark.parametrize("method", METHODS)
def test_export_a_method_then_train_reproduces_its_confirmed_run(smoke, run_cli, tmp_path,
                                                                 method):
    out_yaml = tmp_path / "best.yaml"
    res = run_cli("export", smoke["exp"], "--method", method, "--out", out_yaml)
    assert res["code"] == 0, res["err"]
    exported = yaml.safe_load(out_yaml.read_text())
    prov = exported["provenance"]
    assert exported["method"]["name"] == method and exported["train"]["seed"] == 1
    run = tmp_path / "run"
    res = run_cli("train", "--config", out_yaml, "--output", run)
    assert res["code"] == 0, res["err"]
    final = json.loads((run / "final.json").read_text())
    confirm = table_to_rows(pq.read_table(smoke["exp"] / "confirm.parquet"))
    row = next(r for r in confirm
               if r["method"] == method and r["trial_id"] == prov["trial_id"] and r["seed"] == 1)
    # exact: same config, seed, epochs and CPU as the confirmation run
    assert final["selected_epoch"] == row["selected_epoch"]
    assert final["val_acc"] == row["val_acc"] and final["test_acc"] == row["test_acc"]


def test_export_a_named_trial_and_bad_input(smoke, run_cli, tmp_path):
    summary = _summary(smoke["exp"])
    worst = min(summary, key=lambda r: r["best_val_acc"])
    out_yaml = tmp_path / "t.yaml"
    res = run_cli("export", smoke["exp"], "--out", out_yaml, "--trial", worst["trial_id"])
    assert res["code"] == 0
    exported = yaml.safe_load(out_yaml.read_text())
    assert exported["provenance"]["trial_id"] == worst["trial_id"]
    assert exported["train"]["seed"] == 0  # the search's own seed: the trial as it ran
    res = run_cli("export", smoke["exp"], "--out", tmp_path / "x.yaml", "--trial", "nope")
    assert res["code"] == 2 and "no trial 'nope'" in res["err"]
    res = run_cli("export", smoke["exp"], "--out", tmp_path / "x.yaml", "--method", "focal")
    assert res["code"] == 2 and "method 'focal' has no result" in res["err"]
    assert not (tmp_path / "x.yaml").exists()
    res = run_cli("export", tmp_path / "missing", "--out", tmp_path / "y.yaml")
    assert res["code"] == 2 and len(res["err"].strip().splitlines()) == 1
    assert not (tmp_path / "y.yaml").exists()


def test_report_json_carries_the_table_numbers(smoke, run_cli):
    res = run_cli("report", "--storage", smoke["storage"], "--json")
    assert res["code"] == 0, res["err"]
    reports = json.loads(res["out"])
    assert [r["dataset"] for r in reports] == ["digits_lt"]
    rows = {r["method"]: r for r in reports[0]["rows"]}
    assert sorted(rows) == sorted(METHODS)
    for method in METHODS:
        prov = yaml.safe_load((smoke["exp"] / "best" / f"{method}.yaml").read_text())["provenance"]
        assert rows[method]["val_mean"] == pytest.approx(prov["val_mean"])
        assert rows[method]["test_mean"] == pytest.approx(prov["test_mean"])
        assert rows[method]["trials"] == TRIALS
    diff = reports[0]["difference"]
    assert diff["baseline"] == "cdb_ce" and diff["seeds"] == [1, 2]
    paired = [rows["difficulty_net"]["test_by_seed"][s] - rows["cdb_ce"]["test_by_seed"][s]
              for s in ("1", "2")]
    assert diff["diff_mean"] == pytest.approx(sum(paired) / 2)
    one = run_cli("report", smoke["exp"], "--json")
    assert json.loads(one["out"]) == reports
    res = run_cli("report", smoke["exp"])
    winner = yaml.safe_load((smoke["exp"] / "best_config.yaml").read_text())["provenance"]
    assert res["code"] == 0 and f"{winner['method']} (winner)" in res["out"]
    assert reports[0]["winner"] == winner["method"]


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
    (["--methods", "difficulty_net,magic"], "unknown method 'magic'"),
    (["--methods", "ce,ce"], "names ce twice"),
    (["--confirm-seeds", "0"], "--confirm-seeds"),
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
    code, out, err = cli("search", "--smoke", "--trials", 2, "--max-epochs", 1, "--method",
                         "difficulty_net", "--no-confirm", "--set", "optim.lr=0.07",
                         "--storage", tmp_path, "--name", "pin")
    assert code == 0, err
    assert "fixed by --set, not searched: optim.lr" in out
    summary = pq.read_table(tmp_path / "pin" / "summary.parquet").to_pylist()
    assert len(summary) == 2
    for r in summary:
        assert yaml.safe_load(r["config_yaml"])["optim"]["lr"] == 0.07
        assert r.get("config/optim.lr") is None


def test_diverging_trials_end_cleanly_and_the_search_exits_non_zero(ray_local, cli, tmp_path):
    """A NaN loss is an answer about the config (status `diverged`), not a trial error: no
    traceback, no error line per trial, and with nothing usable the search exits 1."""
    code, out, err = cli("search", "--smoke", "--trials", 2, "--method", "difficulty_net",
                         "--set", "optim.lr=1e8", "--storage", tmp_path, "--name", "nan")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnet-tune: error: "), err
    assert "reported a usable result (2 diverged)" in lines[0]
    assert "training loss became nan at epoch 1" in lines[0]
    assert "Traceback" not in out + err and "failed" not in out
    assert "diverged 2" in out and "errored 0" in out
    exp = tmp_path / "nan"
    summary = pq.read_table(exp / "summary.parquet").to_pylist()
    assert [r["status"] for r in summary] == ["diverged", "diverged"]
    assert all("nan at epoch 1" in r["error"] for r in summary)
    assert all(r["last_epoch"] == 1 and r["best_val_acc"] == 0.0 for r in summary)
    rows = table_to_rows(pq.read_table(exp / "trials.parquet"))
    assert len(rows) == 2 and all(r["diverged"] is True and r["val_acc"] == 0.0 for r in rows)
    assert not any((exp / f"trial_{r['trial_id']}" / "error.txt").exists() for r in summary)
    assert not (exp / "best_config.yaml").exists()
    # their documented state: COMPLETE with 0.0 (the worst value), not PRUNED though they end
    # before --max-epochs
    assert assert_studies_mirror(exp) == {"COMPLETE": 2}


def test_asha_sees_stage2_epochs_and_does_not_cut_them(ray_local, cli, tmp_path):
    """max_t is stage 1 + stage 2: a trial ASHA never stops runs all E1 + E2 epochs."""
    code, _, err = cli("search", "--dataset", "digits_lt", "--method", "ce", "--trials", 2,
                       "--max-epochs", 2, "--grace-period", 1, "--reduction-factor", 2,
                       "--cpus-per-trial", 2, "--no-confirm", "--set", "stage2.enabled=true",
                       "--set", "stage2.epochs=2", "--storage", tmp_path, "--name", "two")
    assert code == 0, err
    exp = tmp_path / "two"
    summary = _summary(exp)
    assert len(summary) == 2
    for r in summary:
        assert r["status"] == ("finished" if r["last_epoch"] == 4 else "stopped")
    assert any(r["status"] == "finished" for r in summary)  # the first trial is never stopped
    rows = table_to_rows(pq.read_table(exp / "trials.parquet"))
    finished = {r["trial_id"] for r in summary if r["status"] == "finished"}
    stages = [x["stage"] for x in rows if x["trial_id"] in finished]
    assert stages == [1, 1, 2, 2] * len(finished)
    assert json.loads((exp / "search.json").read_text())["epochs_per_trial"] == 4


@pytest.mark.parametrize("key", ["stage2.epochs", "stage2.enabled"])
def test_a_space_cannot_search_the_length_of_a_trial(cli, one_line_error, tmp_path, key):
    from dnet_tune.tune.space import default_space_path

    text = default_space_path("digits_lt").read_text()
    choice = "[1, 2]" if key == "stage2.epochs" else "[true, false]"
    text = text.replace("common:\n", f"common:\n  {key}: {{type: categorical, choices: "
                                     f"{choice}}}\n", 1)
    space = tmp_path / "space.yaml"
    space.write_text(text)
    storage = tmp_path / "results"
    code, _, err = cli("search", "--space", space, "--smoke", "--storage", storage)
    one_line_error(code, err, key, "fixed:")
    assert not storage.exists()


def test_resume_runs_only_the_missing_confirmation_runs(smoke, run_cli, tmp_path, monkeypatch):
    """A search stopped during its confirmation: the Tune experiment has ended, so the resume
    goes straight to the confirmation and runs only what confirm.parquet lacks.

    Its samplers are the ones it started with, whatever today's defaults and rule say (here
    changed under it): Ray restores them from its snapshot and search.json keeps their record.
    """
    import shutil

    from dnet_tune.tune import samplers
    from dnet_tune.tune.storage import read_table, write_table

    monkeypatch.setattr(samplers, "TPE", {
        "n_startup_trials": 3, "n_ei_candidates": 5, "multivariate": False, "group": False,
        "constant_liar": False})
    monkeypatch.setattr(samplers, "startup_trials", lambda trials, slots: 1)

    exp = tmp_path / "copy"
    shutil.copytree(smoke["exp"], exp)  # Tune restores a moved experiment
    meta = json.loads((exp / "search.json").read_text())
    (exp / "search.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    done = read_table(str(exp / "confirm.parquet"))
    kept, dropped = done[: len(done) // 2], done[len(done) // 2:]
    write_table(str(exp / "confirm.parquet"), kept)
    res = run_cli("search", "--resume", exp)
    assert res["code"] == 0, res["err"]
    assert "resuming: 12 of 12 trials had ended" in res["out"]
    again = read_table(str(exp / "confirm.parquet"))
    assert len(again) == len(done)
    key = ("method", "trial_id", "seed")
    by_key = {tuple(r[k] for k in key): r for r in again}
    for row in kept:  # not run again: even its timing is the old one
        assert by_key[tuple(row[k] for k in key)] == row
    for row in dropped:  # run again: the same numbers (same config, seed, CPU)
        new = by_key[tuple(row[k] for k in key)]
        assert new["val_acc"] == row["val_acc"] and new["test_acc"] == row["test_acc"]
    meta = json.loads((exp / "search.json").read_text())
    assert meta["status"] == "finished" and meta["compute"]["cdb_ce"]["confirm_runs"] == TOP * SEEDS
    started = json.loads((smoke["exp"] / "search.json").read_text())["sampler"]
    assert meta["sampler"] == started and started["name"] == "tpe"
    restored = meta["resumes"][-1]["samplers"]
    assert restored == {m: {"class": "TPESampler", **{k: v for k, v in started["settings"].items()
                                                      if k != "seed"}} for m in METHODS}
    assert restored["difficulty_net"]["n_startup_trials"] == 10  # not the 3 patched in


def test_optuna_storage_url_holds_every_study(ray_local, cli, tmp_path, one_line_error):
    """--optuna-storage: a real database (SQLite here, through the same RDB URL a server
    takes); search.json names it without a password, nothing goes to a journal file."""
    import optuna

    db = tmp_path / "studies.db"
    code, _, err = cli("search", "--smoke", "--methods", "ce,focal", "--trials", 2,
                       "--max-epochs", 1, "--no-confirm", "--optuna-storage", f"sqlite:///{db}",
                       "--storage", tmp_path / "r", "--name", "db")
    assert code == 0, err
    exp = tmp_path / "r" / "db"
    assert not (exp / "optuna.journal").exists()
    meta = json.loads((exp / "search.json").read_text())
    assert meta["optuna_storage"] == f"sqlite:///{db}"
    assert meta["optuna_trials"] == {"ce": {"COMPLETE": 2}, "focal": {"COMPLETE": 2}}
    for method in ("ce", "focal"):
        study = optuna.load_study(study_name=f"db:{method}", storage=f"sqlite:///{db}")
        assert len(study.trials) == 2
    code, _, err = cli("search", "--smoke", "--trials", 1, "--no-confirm",
                       "--optuna-storage", "nosuchdb://x", "--storage", tmp_path / "r2")
    one_line_error(code, err, "cannot open --optuna-storage 'nosuchdb://x'")
    assert not (tmp_path / "r2").exists()
