"""Result files: an error while writing never loses what the trials reported."""

from __future__ import annotations

import json

import pytest

from dnet_tune.tune.results import (
    AT_BEST,
    ResultsWriteError,
    TrialRecord,
    sampled_values,
    summary_rows,
    write_tables,
)
from dnet_tune.tune.storage import StorageWriteError


def _record(value):
    rec = TrialRecord("t1", "ce", {"optim.lr": 0.1}, {"method": {"name": "ce"}})
    rec.rows = [{"epoch": 1, "val_acc": 0.5, "epoch_time_s": 1.0, "odd": value}]
    return rec


def test_tables_are_written(tmp_path):
    rec = _record(1.0)
    write_tables(str(tmp_path), [rec], summary_rows([rec], 1), [])
    assert (tmp_path / "trials.parquet").is_file() and (tmp_path / "summary.parquet").is_file()
    assert not (tmp_path / "raw_results.json").exists()


def test_a_failed_write_keeps_the_raw_results_and_says_where(tmp_path):
    rec = _record(1j)  # no Parquet type holds a complex number
    with pytest.raises(ResultsWriteError) as info:
        write_tables(str(tmp_path), [rec], summary_rows([rec], 1), [])
    raw = tmp_path / "raw_results.json"
    assert str(raw) in str(info.value) and "\n" not in str(info.value)
    kept = json.loads(raw.read_text())
    assert kept["trials"][0]["trial_id"] == "t1"
    assert kept["trials"][0]["rows"][0]["val_acc"] == 0.5


def test_a_storage_that_refuses_writes_is_named_and_nothing_is_half_written(tmp_path):
    """A storage that takes no writes (here a file where the experiment's folder would go:
    refused even for root) is no table's fault: the error names the location, and no
    raw_results.json is tried on the same storage."""
    rec = _record(1.0)
    (tmp_path / "f").write_text("not a folder")
    exp = tmp_path / "f" / "exp"
    with pytest.raises(StorageWriteError) as info:
        write_tables(str(exp), [rec], summary_rows([rec], 1), [])
    assert f"cannot write '{exp / 'trials.parquet'}'" in str(info.value)
    assert info.value.location == str(exp / "trials.parquet")
    assert (tmp_path / "f").read_text() == "not a folder"


def test_a_trial_tune_has_not_ended_is_unfinished_in_the_live_summary():
    rec = _record(1.0)
    assert summary_rows([rec], 1)[0]["status"] == "unfinished"
    rec.done = True
    assert summary_rows([rec], 1)[0]["status"] == "finished"
    rec.diverged = True
    assert summary_rows([rec], 1)[0]["status"] == "diverged"


def test_the_metrics_kept_at_the_selected_epoch_are_the_trainer_s_own():
    """summary.parquet's `<metric>_at_best` and confirm.parquet's columns use the trainer's
    names: a shot group renamed or added reaches both without a list to update."""
    from dnet_tune.run import resolve_config
    from dnet_tune.train import Trainer
    from dnet_tune.tune.confirm import SELECTED

    cfg = resolve_config(dataset="digits_lt", overrides={"method": {"name": "ce"},
                                                         "train": {"epochs": 1}})
    (epoch,) = Trainer(cfg).fit()
    assert (*AT_BEST, "test_class_acc") == SELECTED
    assert set(SELECTED) == {k for k in epoch if k.startswith(("val_", "test_"))}
    rec = TrialRecord("t1", "ce", {}, {})
    rec.rows = [epoch]
    row = summary_rows([rec], 1)[0]
    assert row["best_val_acc"] == epoch["val_acc"]
    assert all(row[f"{k}_at_best"] == epoch[k] for k in AT_BEST if k != "val_acc")


def test_a_trial_s_sampled_values_are_what_the_searcher_chose():
    row = {"trial_id": "t1", "method": "difficulty_net", "best_val_acc": 0.5,
           "config/method.name": "difficulty_net", "config/dn.depth": 2, "config/dn.width_0": 64,
           "config/dn.width_1": 32, "config/dn.hidden": "[64, 32]", "config/optim.lr": 0.1,
           "config/method.cdb_tau": None}  # another method's parameter: empty in this row
    assert sampled_values(row, frozenset({"dn.depth", "dn.width"})) == {
        "dn.hidden": "[64, 32]", "optim.lr": 0.1}


def test_reading_tables_never_aborts_the_interpreter_at_exit(tmp_path):
    """`report` once died at exit with "terminate called without an active exception" (134):
    an Arrow pool thread freed a Python-backed buffer after shutdown began. Fifty reads then
    exit, ten times: with the old reader about one run in four aborted."""
    import subprocess
    import sys

    from dnet_tune.tune.storage import write_table

    table = tmp_path / "t.parquet"
    write_table(str(table), [{"trial_id": f"t{i}", "epoch": e, "val_acc": 0.5, "lists": [1.0] * 10}
                             for i in range(20) for e in range(1, 9)])
    code = ("import sys\nfrom dnet_tune.tune.storage import read_table\n"
            "for _ in range(50):\n    rows = read_table(sys.argv[1])\n"
            "print(len(rows))\n")
    for _ in range(10):
        res = subprocess.run([sys.executable, "-c", code, str(table)], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0 and res.stdout.strip() == "160", res.stderr[-500:]
