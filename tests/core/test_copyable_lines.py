"""Lines a user copies (paths, `--resume` and `export` commands) come out whole, also when stdout
is a pipe or a log file: there the console assumes 80 columns and used to break a long path in
two (`best_confi` / `g.yaml`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dnet_tune.tune.results import TrialRecord, summary_rows, write_tables

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def interrupted(tmp_path):
    """A small interrupted experiment, deep enough that its paths are far over 80 columns."""
    exp = tmp_path / ("a-results-folder-with-a-long-name" * 2) / "digits_lt-ce-20250101-000000"
    exp.mkdir(parents=True)
    rec = TrialRecord("abc_00000", "ce", {"optim.lr": 0.1},
                      {"method": {"name": "ce"}, "train": {"seed": 0}})
    rec.rows = [{"epoch": e, "val_acc": 0.5 + e / 100, "test_acc": 0.4, "epoch_time_s": 1.0}
                for e in (1, 2)]
    rec.done = True
    write_tables(str(exp), [rec], summary_rows([rec], 2), [])
    meta = {"status": "interrupted", "dataset": "digits_lt", "methods": ["ce"],
            "budget": {"trials": 2}, "confirm": {"top": 1},
            "resources": {"gpus_per_trial": 0.0}}
    (exp / "search.json").write_text(json.dumps(meta))
    return exp


def _piped(*argv: object) -> list[str]:
    """`dnet-tune ARGV` with stdout a pipe and no COLUMNS: what a log file or a job gets."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    res = subprocess.run([sys.executable, "-m", "dnet_tune.cli", *map(str, argv)],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def _one_line(lines: list[str], text: str) -> None:
    assert len(text) > 100  # longer than any width the console could assume
    assert any(text in line for line in lines), "\n".join(lines)


def test_export_prints_the_train_command_on_one_line(interrupted, tmp_path):
    out = tmp_path / ("a-configs-folder-with-a-long-name" * 2) / "best.yaml"
    out.parent.mkdir()
    lines = _piped("export", interrupted, "--out", out)
    _one_line(lines, f"note: {interrupted} is interrupted: this is the best so far")
    _one_line(lines, f"wrote {out}: ce, trial abc_00000")
    _one_line(lines, f"run it with: dnet-tune train --config {out}")
    assert out.is_file()


def test_report_prints_the_resume_command_and_the_written_files_on_one_line(interrupted,
                                                                            tmp_path):
    html = tmp_path / ("a-reports-folder-with-a-long-name" * 2) / "report.html"
    png = html.parent / "plots"
    lines = _piped("report", interrupted, "--html", html, "--png", png)
    _one_line(lines, f"continue with: dnet-tune search --resume {interrupted}")
    _one_line(lines, f"wrote {html} (")
    _one_line(lines, f"PNG files to {png}/")
