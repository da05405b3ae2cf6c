"""Which config each method chose, as files and as rows (`tune/report/chosen_configs.py`), on an
experiment written by hand (`experiments.py`: real Parquet, no Ray): the confirmation overrules
the search's ranking, the chosen config carries its first confirmation seed and its provenance,
`export` and `report` read the same choice."""

from __future__ import annotations

import pytest
import yaml
from experiments import SEEDS, write_experiment

from dnet_tune.errors import UserError
from dnet_tune.tune.report import chosen_configs
from dnet_tune.tune.results import load_experiment


@pytest.fixture
def exp(tmp_path):
    return write_experiment(tmp_path / "exp1")


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
    assert dn["config"] == {"optim.lr": 0.02, "optim.weight_decay": 2e-5,
                            "dn.hidden": "[64, 256]"}
    assert ce["config"] == {"optim.lr": 0.04, "optim.weight_decay": 4e-5}
    assert chosen_configs.report(str(tmp_path), exp) == [reports]


def test_without_confirmation_the_best_search_trial_is_chosen(tmp_path):
    exp = write_experiment(tmp_path / "exp2", status="interrupted", confirm=False)
    (rep,) = chosen_configs.report(str(tmp_path))
    assert rep["status"] == "interrupted"
    assert [(r["method"], r["trial_id"], r["confirmed"]) for r in rep["rows"]] == [
        ("difficulty_net", "dn_1", False), ("ce", "ce_2", False)]
    row, status = chosen_configs.export(exp, str(tmp_path / "best.yaml"))
    assert (row["trial_id"], status) == ("dn_1", "interrupted")
    # no confirmation seed: the trial's own
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["train"]["seed"] == 0
