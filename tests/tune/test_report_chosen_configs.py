"""Which config each method chose, as files and as rows (`tune/report/chosen_configs.py`), on an
experiment written by hand with the results writer (real Parquet, no Ray): the confirmation
overrules the search's ranking, the chosen config carries its first confirmation seed and its
provenance, `export` and `report` read the same choice."""

from __future__ import annotations

import pytest
import yaml

from dnet_tune.errors import UserError
from dnet_tune.tune.report import chosen_configs
from dnet_tune.tune.results import TrialRecord, load_experiment, summary_rows, write_json
from dnet_tune.tune.storage import write_table

SEEDS = [5, 6]
# search trial -> (method, best val in the search, lr); each ran 2 epochs
TRIALS = {"dn_1": ("difficulty_net", 0.85, 0.01), "dn_2": ("difficulty_net", 0.83, 0.02),
          "ce_1": ("ce", 0.70, 0.03), "ce_2": ("ce", 0.80, 0.04)}
# confirmation runs: (trial, seed) -> (val, test); dn_2 was second in the search and wins on
# its mean val over the seeds (.85 > .81); ce_2 stays first
CONFIRM = {("dn_1", 5): (0.80, 0.78), ("dn_1", 6): (0.82, 0.80),
           ("dn_2", 5): (0.84, 0.79), ("dn_2", 6): (0.86, 0.81),
           ("ce_1", 5): (0.70, 0.69), ("ce_1", 6): (0.71, 0.70),
           ("ce_2", 5): (0.75, 0.74), ("ce_2", 6): (0.77, 0.76)}


def _record(index: int, trial_id: str) -> TrialRecord:
    method, val, lr = TRIALS[trial_id]
    flat = {"method.name": method, "optim.lr": lr}
    if method == "difficulty_net":  # a virtual depth and its per-layer samples steer sampling
        flat |= {"dn.depth": 2, "dn.width_0": 64, "dn.width_1": 32, "dn.hidden": "[64, 32]"}
    resolved = {"method": {"name": method}, "optim": {"lr": lr},
                "train": {"seed": 0, "epochs": 2}}
    rec = TrialRecord(trial_id, method, flat, resolved, index=index, done=True)
    rec.rows = [{"epoch": e, "val_acc": val - 0.1 * (2 - e), "test_acc": val - 0.05,
                 "test_many": 0.9, "test_medium": 0.8, "test_few": 0.6, "epoch_time_s": 30.0}
                for e in (1, 2)]
    return rec


def _confirm_row(trial_id: str, seed: int) -> dict:
    val, test = CONFIRM[trial_id, seed]
    return {"method": TRIALS[trial_id][0], "trial_id": trial_id, "rank": 1, "seed": seed,
            "val_acc": val, "test_acc": test, "test_many": 0.9, "test_medium": 0.8,
            "test_few": test - 0.2, "run_seconds": 60.0, "error": ""}


def _write_experiment(exp, status="finished", confirm=True) -> str:
    records = [_record(i, t) for i, t in enumerate(TRIALS)]
    write_table(str(exp / "summary.parquet"), summary_rows(records, max_epochs=2))
    if confirm:
        write_table(str(exp / "confirm.parquet"), [_confirm_row(t, s) for t, s in CONFIRM])
    write_json(str(exp / "search.json"), {
        "experiment": exp.name, "dataset": "digits_lt", "methods": ["difficulty_net", "ce"],
        "status": status, "confirm": {"top": 2, "seeds": SEEDS} if confirm else {"top": 1},
        "budget": {"trials": 2, "max_epochs": 2}, "resources": {"gpus_per_trial": 0.5},
        "virtual_params": ["dn.depth", "dn.width"], "versions": {"dnet-tune": "0.1.0"},
        "git_sha": "abc123", "request": {"sampler": "random", "scheduler": "asha"}})
    return str(exp)


@pytest.fixture
def exp(tmp_path):
    (tmp_path / "exp1").mkdir()
    return _write_experiment(tmp_path / "exp1")


def test_the_confirmation_chooses_each_method_s_config_and_the_winner(exp):
    rows, diff = chosen_configs.comparison(*load_experiment(exp))
    assert [(r["method"], r["trial_id"], r["seeds"]) for r in rows] == [
        ("difficulty_net", "dn_2", SEEDS), ("ce", "ce_2", SEEDS)]
    dn, ce = rows
    assert dn["val_mean"] == pytest.approx(0.85) and ce["val_mean"] == pytest.approx(0.76)
    # what each method spent: 2 trials x 2 epochs x 30 s, 4 runs x 60 s; GPUs at 0.5 a trial
    assert (dn["trial_seconds"], dn["confirm_seconds"], dn["confirm_gpu_seconds"]) == (
        120.0, 240.0, 120.0)
    assert diff["baseline"] == "ce" and diff["seeds"] == SEEDS
    assert diff["diff_mean"] == pytest.approx(0.05)  # .79-.74, .81-.76


def test_best_files_hold_each_chosen_config_with_its_first_seed_and_provenance(exp, tmp_path):
    meta, summary, confirm = load_experiment(exp)
    rows, _ = chosen_configs.comparison(meta, summary, confirm)
    best = chosen_configs.write_bests(exp, meta, summary, rows)
    assert best is not None and best["method"] == "difficulty_net"
    dn = yaml.safe_load((tmp_path / "exp1" / "best" / "difficulty_net.yaml").read_text())
    provenance = dn.pop("provenance")
    # the chosen trial's resolved config, trained with the first confirmation seed
    assert dn == {"method": {"name": "difficulty_net"}, "optim": {"lr": 0.02},
                  "train": {"seed": 5, "epochs": 2}}
    assert {k: provenance[k] for k in ("experiment", "dataset", "method", "trial_id",
                                       "search_epoch", "confirmed", "seeds", "git_sha")} == {
        "experiment": exp, "dataset": "digits_lt", "method": "difficulty_net",
        "trial_id": "dn_2", "search_epoch": 2, "confirmed": True, "seeds": SEEDS,
        "git_sha": "abc123"}
    assert provenance["search_val_acc"] == pytest.approx(0.83)
    assert provenance["val_mean"] == pytest.approx(0.85)
    assert provenance["test_mean"] == pytest.approx(0.80)
    assert provenance["versions"] == {"dnet-tune": "0.1.0"}  # the search's, not today's
    assert "seed 5" in provenance["note"]
    ce = yaml.safe_load((tmp_path / "exp1" / "best" / "ce.yaml").read_text())
    assert ce["optim"] == {"lr": 0.04} and ce["provenance"]["trial_id"] == "ce_2"
    assert (tmp_path / "exp1" / "best_config.yaml").read_text() == (
        tmp_path / "exp1" / "best" / "difficulty_net.yaml").read_text()


def test_export_writes_the_winner_a_method_s_choice_or_one_trial(exp, tmp_path):
    out = tmp_path / "out.yaml"
    row, status = chosen_configs.export(exp, str(out))
    assert (row["method"], row["trial_id"], status) == ("difficulty_net", "dn_2", "finished")
    assert yaml.safe_load(out.read_text())["train"]["seed"] == 5

    row, _ = chosen_configs.export(exp, str(out), method="ce")
    assert row["trial_id"] == "ce_2" and yaml.safe_load(out.read_text())["optim"]["lr"] == 0.04

    row, _ = chosen_configs.export(exp, str(out), trial_id="dn_1")
    written = yaml.safe_load(out.read_text())
    # one search trial: its own seed, not confirmed, its search numbers
    assert written["train"]["seed"] == 0 and written["optim"]["lr"] == 0.01
    assert written["provenance"]["confirmed"] is False and written["provenance"]["seeds"] == []
    assert written["provenance"]["val_mean"] == pytest.approx(0.85)


def test_export_of_what_is_not_there_is_one_line_and_writes_nothing(exp, tmp_path):
    out = tmp_path / "out.yaml"
    with pytest.raises(UserError, match="no trial 'nope' in this experiment; trials: dn_1, "
                                        "dn_2, ce_1, ce_2"):
        chosen_configs.export(exp, str(out), trial_id="nope")
    with pytest.raises(UserError, match="method 'focal' has no result in this experiment; "
                                        "methods: difficulty_net, ce"):
        chosen_configs.export(exp, str(out), method="focal")
    assert not out.exists()


def test_report_rows_show_the_sampled_values_without_the_structural_ones(exp, tmp_path):
    (tmp_path / "not_an_experiment").mkdir()
    (reports,) = chosen_configs.report(str(tmp_path))
    assert reports["experiment"] == exp and reports["winner"] == "difficulty_net"
    assert (reports["sampler"], reports["scheduler"]) == ("random", "asha")
    assert (reports["trials_ended"], reports["trials_budget"]) == (4, 4)
    dn, ce = reports["rows"]
    # no method name, no virtual depth, no per-layer samples: what a user would set
    assert dn["config"] == {"optim.lr": 0.02, "dn.hidden": "[64, 32]"}
    assert ce["config"] == {"optim.lr": 0.04}
    assert chosen_configs.report(str(tmp_path), exp) == [reports]


def test_without_confirmation_the_best_search_trial_is_chosen(tmp_path):
    (tmp_path / "exp2").mkdir()
    exp = _write_experiment(tmp_path / "exp2", status="interrupted", confirm=False)
    (rep,) = chosen_configs.report(str(tmp_path))
    assert rep["status"] == "interrupted"
    assert [(r["method"], r["trial_id"], r["confirmed"]) for r in rep["rows"]] == [
        ("difficulty_net", "dn_1", False), ("ce", "ce_2", False)]
    row, status = chosen_configs.export(exp, str(tmp_path / "best.yaml"))
    assert (row["trial_id"], status) == ("dn_1", "interrupted")
    # no confirmation seed: the trial's own
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["train"]["seed"] == 0
