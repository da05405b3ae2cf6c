"""The report as text (`tune/report/text.py`): the comparison table, the difference line, the
status line of an unfinished search and `report`'s printer, on hand-made rows."""

from __future__ import annotations

import io
import math
import re

import pytest
from rich.console import Console

from dnet_tune.tune.report.text import (
    comparison_table,
    difference_line,
    print_report,
    status_line,
)


def _text(*renderables, width=200) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False)
    for r in renderables:
        console.print(r)
    return out.getvalue()


def _cells(text: str) -> list[list[str]]:
    """The table's lines as cells (columns are at least two spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


DN_ROW = {"method": "difficulty_net", "val_mean": 0.91234, "test_mean": 0.9012,
          "test_ci95": 0.0123, "test_many": 0.95, "test_medium": 0.9, "test_few": 0.801,
          "trials": 16, "trial_seconds": 600.0, "confirm_seconds": 120.0, "gpu_seconds": 600.0,
          "confirm_gpu_seconds": 120.0}
CE_ROW = {"method": "ce", "val_mean": 0.8, "test_mean": 0.79, "test_ci95": math.nan,
          "test_many": None, "test_medium": 0.7, "test_few": math.nan, "trials": 3,
          "trial_seconds": 30.0}


def test_the_comparison_table_one_row_per_method():
    cells = _cells(_text(comparison_table([DN_ROW, CE_ROW], "digits_lt: exp1")))
    assert cells[0] == ["digits_lt: exp1"]
    assert cells[1] == ["method", "val", "test ±95%CI", "many", "med", "few", "trials",
                        "compute"]
    # percent with one decimal, the CI's half-width in points, minutes and GPU-hours of the
    # search and the confirmation together
    assert cells[3] == ["difficulty_net", "91.2", "90.1 ±1.2", "95.0", "90.0", "80.1", "16",
                        "12.0 min"]
    assert cells[4] == ["0.20 GPU-h"]  # its own line: the table stays within 80 columns
    # no interval (one seed), missing groups as "-", no GPU: no GPU-hours
    assert cells[5] == ["ce", "80.0", "79.0", "-", "70.0", "-", "3", "0.5 min"]


def test_the_difference_line_says_whether_the_interval_excludes_zero():
    diff = {"method": "difficulty_net", "baseline": "balanced_softmax", "seeds": [1, 2, 3],
            "diff_mean": 0.0105, "diff_ci95": 0.0255, "significant": False}
    assert difference_line(diff) == (
        "difficulty_net − balanced_softmax (best baseline by val) on test: +1.05 ± 2.55 points "
        "(95% CI, paired over seeds 1, 2, 3): no significant difference (the interval "
        "contains 0)")
    worse = {**diff, "diff_mean": -0.04, "diff_ci95": 0.01, "significant": True}
    assert difference_line(worse).endswith("-4.00 ± 1.00 points (95% CI, paired over seeds "
                                           "1, 2, 3): significant")
    one_run = {**diff, "seeds": [], "diff_ci95": math.nan}
    assert difference_line(one_run) == (
        "difficulty_net − balanced_softmax (best baseline by val) on test: +1.05 points, one "
        "run each: no interval, confirm over seeds to compare")
    assert difference_line(None) == ""


def test_an_unfinished_search_gets_its_progress_and_for_an_interrupted_one_the_command():
    rep = {"experiment": "/r/exp1", "status": "interrupted", "trials_ended": 5,
           "trials_budget": 16}
    assert status_line(rep) == (
        "/r/exp1 is interrupted: 5 of 16 trials ended, numbers are provisional (best so far, "
        "not confirmed); continue with: dnet-tune search --resume /r/exp1")
    assert status_line({"experiment": "/r/exp2", "status": "running"}) == (
        "/r/exp2 is running: 0 of ? trials ended, numbers are provisional (best so far, not "
        "confirmed)")


def _report(**over):
    rows = [{**DN_ROW, "trial_id": "dn_7", "config": {
                "dn.hidden": "[64, 128]", "method.lam": 0.5, "dn.input_mode": "relative",
                "optim.lr": 0.00123, "method.meta_interval": 3, "optim.wd": 0.0005,
                "dn.lr": 0.0003}},
            {**CE_ROW, "trial_id": "cb_2", "method": "class_balanced",
             "config": {"method.cb_beta": 0.9999, "method.driver_target": "detached",
                        "optim.lr": 0.1}}]
    return {"experiment": "/r/exp1", "dataset": "digits_lt", "rows": rows, "status": "finished",
            "sampler": "tpe", "scheduler": "asha", "winner": "difficulty_net",
            "difference": None, **over}


def test_report_prints_each_method_s_chosen_trial_and_its_key_values_in_short():
    out = io.StringIO()
    print_report(Console(file=out, width=200, highlight=False), [_report()], "/r")
    lines = out.getvalue().splitlines()
    assert lines[0].strip() == "digits_lt: /r/exp1"
    # in a fixed order whatever the config's; values that are not key parameters (optim.wd)
    # are left out; two significant digits, but 0.9999 keeps its own (β must not read as 1);
    # DN widths lose their spaces; dn.lr and optim.lr stay apart
    assert lines[-2:] == [
        "  difficulty_net (winner): trial dn_7 λ=0.5 dn_lr=0.0003 dn=[64,128] in=rel k=3 "
        "lr=0.0012",
        "  class_balanced: trial cb_2 target=det lr=0.1 β=0.9999"]
    assert not any("−" in line for line in lines)  # no difference without one to show


def test_report_of_an_unfinished_search_and_of_a_baseline_search():
    out = io.StringIO()
    console = Console(file=out, width=200, highlight=False)
    diff = {"method": "difficulty_net", "baseline": "class_balanced", "seeds": [],
            "diff_mean": 0.1, "diff_ci95": math.nan, "significant": False}
    print_report(console, [
        _report(status="interrupted", trials_ended=3, trials_budget=8, difference=diff,
                sampler="random", scheduler="none"),
        _report(experiment="/r/exp2", status="running", rows=[]),
    ], "/r")
    lines = [line.strip() for line in out.getvalue().splitlines()]
    assert lines[0] == status_line({"experiment": "/r/exp1", "status": "interrupted",
                                    "trials_ended": 3, "trials_budget": 8})
    assert lines[1].startswith("digits_lt: /r/exp1 (random proposals, no early stopping)")
    assert difference_line(diff) in lines
    # a search without rows yet: its status line, no table
    assert lines[-1] == status_line({"experiment": "/r/exp2", "status": "running"})


def test_the_table_title_of_an_unfinished_search_names_its_status():
    out = io.StringIO()
    print_report(Console(file=out, width=200), [_report(status="interrupted")], "/r")
    titles = [line.strip() for line in out.getvalue().splitlines()
              if line.strip().startswith("digits_lt: ")]
    assert titles == ["digits_lt: /r/exp1 [interrupted]"]


def test_report_with_nothing_to_show_says_where_it_looked():
    out = io.StringIO()
    print_report(Console(file=out, width=200), [], "/somewhere")
    assert out.getvalue() == "no finished experiments in '/somewhere'\n"


def test_labels_say_what_ran_and_what_was_not_confirmed():
    """DN on Balanced Softmax is named so, in the row and the difference; single trials get
    headers that say so (issue 18)."""
    dn = {**DN_ROW, "label": "difficulty_net (+balanced_softmax)", "confirmed": False,
          "test_ci95": math.nan}
    ce = {**CE_ROW, "confirmed": False}
    text = _text(comparison_table([dn, ce], "t"), width=80)
    cells = _cells(text)
    # the headers say "1 run" under val and test (two lines each, to leave the names room)
    assert cells[1] == ["val", "test"]
    assert cells[2][:3] == ["method", "1 run", "1 run"]
    # in 80 columns the label takes two lines, whole: never cut to "(+balanced_soft…"
    assert cells[4][0] == "difficulty_net" and cells[5] == ["+balanced_softmax", "0.20 GPU-h"]
    assert cells[6][0] == "ce" and "…" not in text
    diff = {"method": "difficulty_net", "label": "difficulty_net (+balanced_softmax)",
            "base_loss": "balanced_softmax", "base_not_compared": True, "baseline": "ce",
            "seeds": [], "diff_mean": 0.02, "diff_ci95": math.nan, "significant": False}
    assert difference_line(diff) == (
        "difficulty_net (+balanced_softmax) − ce (best baseline by val) on test: +2.00 points, "
        "one run each: no interval, confirm over seeds to compare; difficulty_net ran on "
        "balanced_softmax, which is not among the compared methods: the difference includes "
        "balanced_softmax's own effect")
    assert "not among" not in difference_line({**diff, "base_not_compared": False})


@pytest.mark.parametrize("confirmed", [True, False])
def test_the_widest_rows_fit_80_columns_without_cutting_a_name(confirmed):
    """The demo's table once printed '+balanced_softm…': a 100.0 group and GPU-hours are the
    widest cells, and the method names must still be whole."""
    wide = {**DN_ROW, "label": "difficulty_net (+balanced_softmax)", "test_many": 1.0,
            "confirmed": confirmed}
    other = {**DN_ROW, "method": "balanced_softmax", "test_many": 1.0, "confirmed": confirmed}
    text = _text(comparison_table([wide, other], "t"), width=80)
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "+balanced_softmax" in text and "balanced_softmax " in text
