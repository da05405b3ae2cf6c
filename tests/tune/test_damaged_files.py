"""Damaged experiment files and a storage that stops taking writes, on a real search.

One small search (ce, 2 trials, confirmed on 2 seeds) runs on a real local Ray with its storage
refusing the second write of confirm.parquet, as a disk that fills during the confirmation does;
`--resume` then finishes it. Copies of the stopped and the finished experiment are then damaged
the ways files get damaged (cut short by a copy or a full disk, overwritten), and each command
that reads them must say so in one line naming the file, exit 2, and change nothing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from dnet_tune.tune import storage
from dnet_tune.tune.storage import read_table

SEARCH = ("search", "--methods", "ce", "--smoke", "--trials", 2, "--max-epochs", 2,
          "--grace-period", 1, "--confirm-top", 1, "--confirm-seeds", 2, "--seed", 0, "--quiet")


def refusing_confirm_writes(refused: list[str]):
    """storage's atomic write, with the disk full from the second write of confirm.parquet on:
    the temp file gets a few bytes, then ENOSPC, as a real full disk fails a write."""
    real = storage.atomic_write
    seen: list[str] = []

    def write(path, fill):
        if Path(path).name != "confirm.parquet":
            return real(path, fill)
        seen.append(str(path))
        if len(seen) == 1:
            return real(path, fill)

        def partial(tmp: Path) -> None:
            tmp.write_bytes(b"PAR1")
            refused.append(str(tmp))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

        return real(path, partial)

    return write


@pytest.fixture(scope="module")
def stopped(ray_local, tmp_path_factory, run_cli):
    root = tmp_path_factory.mktemp("results")
    refused: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(storage, "atomic_write", refusing_confirm_writes(refused))
        res = run_cli(*SEARCH, "--storage", root, "--name", "full")
    exp = root / "full"
    tables = {n: read_table(str(exp / n)) for n in ("trials.parquet", "summary.parquet",
                                                      "confirm.parquet")}
    keep = tmp_path_factory.mktemp("stopped") / "full"
    shutil.copytree(exp, keep)  # as the failure left it, for the damaged-resume tests
    return {"res": res, "exp": exp, "copy": keep, "refused": refused, "tables": tables}


@pytest.fixture(scope="module")
def finished(stopped, run_cli):
    res = run_cli("search", "--resume", stopped["exp"], "--quiet")
    assert res["code"] == 0, res["err"]
    return stopped["exp"]


def test_a_storage_that_refuses_a_write_stops_the_search_resumably(stopped):
    exp, res = stopped["exp"], stopped["res"]
    assert stopped["refused"], "the injected failure never happened"
    assert res["code"] == 1
    lines = res["err"].strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res["err"], res["err"]
    assert lines[0].startswith("dnet-tune: error: ")
    for needle in (f"cannot write '{exp / 'confirm.parquet'}'", "No space left on device",
                   f"continue with: dnet-tune search --resume {exp}"):
        assert needle in lines[0], (needle, lines[0])
    assert json.loads((exp / "search.json").read_text())["status"] == "interrupted"
    # what was written before stays whole: the first confirmation row, every trial's epochs
    assert len(stopped["tables"]["confirm.parquet"]) == 1
    assert {r["trial_id"] for r in stopped["tables"]["summary.parquet"]} == {
        r["trial_id"] for r in stopped["tables"]["trials.parquet"]}
    assert not list(exp.glob(".confirm.parquet.*"))  # the refused temp file is gone


def test_the_resume_finishes_it_and_keeps_what_was_written(stopped, finished):
    meta = json.loads((finished / "search.json").read_text())
    assert meta["status"] == "finished" and len(meta["resumes"]) == 1
    confirm = read_table(str(finished / "confirm.parquet"))
    assert len(confirm) == 2
    (kept,) = stopped["tables"]["confirm.parquet"]
    assert kept in confirm  # not run again: the same row, timing and all
    assert read_table(str(finished / "trials.parquet")) == stopped["tables"]["trials.parquet"]
    assert (finished / "best" / "ce.yaml").is_file()


# ------------------------------------------------------------------ damaged files


def cut(path: Path) -> None:
    """Cut short, as an interrupted copy or a full disk leaves a file."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble_middle_line(path: Path) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[len(lines) // 2] = b"\x00" * 40
    path.write_bytes(b"\n".join(lines))


def as_list(path: Path) -> None:
    path.write_text("[1, 2]\n")


def garble_start(path: Path) -> None:
    """A pickle whose first bytes were overwritten (an unknown opcode)."""
    data = path.read_bytes()
    path.write_bytes(b"\xfe\xfd" + data[2:])


def cut_before_note(path: Path) -> None:
    """Cut at a line end inside the provenance: still valid YAML."""
    text = path.read_text()
    path.write_text(text[: text.index("  note:")])


OUT = "<out>"
CASES = [  # which experiment, file, damage, command (EXP, FILE and OUT filled in)
    ("finished", "search.json", cut, ["report", "EXP"]),
    ("finished", "search.json", cut, ["report", "--storage", "ROOT"]),
    ("finished", "search.json", as_list, ["report", "EXP", "--json"]),
    ("finished", "search.json", cut, ["export", "EXP", "--out", OUT]),
    ("stopped", "search.json", cut, ["search", "--resume", "EXP"]),
    ("finished", "summary.parquet", cut, ["report", "EXP"]),
    ("finished", "summary.parquet", cut, ["export", "EXP", "--out", OUT]),
    ("finished", "trials.parquet", cut, ["report", "EXP", "--html", OUT]),
    ("finished", "confirm.parquet", cut, ["report", "EXP"]),
    ("finished", "confirm.parquet", cut, ["export", "EXP", "--method", "ce", "--out", OUT]),
    ("stopped", "confirm.parquet", cut, ["search", "--resume", "EXP"]),
    ("stopped", "optuna.journal", garble_middle_line, ["search", "--resume", "EXP"]),
    ("finished", "best/ce.yaml", cut_before_note, ["train", "--config", "FILE", "--output", OUT]),
    ("finished", "best_config.yaml", cut_before_note,
     ["train", "--config", "FILE", "--output", OUT]),
    # Ray Tune's snapshot (the newest of each family, the one Ray restores from)
    ("stopped", "tuner.pkl", cut, ["search", "--resume", "EXP"]),
    ("stopped", "experiment_state-*.json", cut, ["search", "--resume", "EXP"]),
    ("stopped", "search_gen_state-*.json", cut, ["search", "--resume", "EXP"]),
    ("stopped", "searcher-state-*.pkl", garble_start, ["search", "--resume", "EXP"]),
    ("stopped", "callback-states-*.pkl", cut, ["search", "--resume", "EXP"]),
]


@pytest.mark.parametrize(("which", "name", "damage", "argv"), CASES,
                         ids=[f"{c[3][0]}-{c[1]}-{c[2].__name__}" for c in CASES])
def test_a_damaged_file_is_one_line_naming_it_and_changes_nothing(
        stopped, finished, run_cli, one_line_error, state_of, tmp_path, which, name, damage, argv):
    source = stopped["copy"] if which == "stopped" else finished
    exp = tmp_path / "results" / source.name
    shutil.copytree(source, exp)
    damaged = max(exp.glob(name))  # a name, or the newest of Ray's per-session files
    damage(damaged)
    before = state_of(exp)
    out = tmp_path / "out"
    fill = {"EXP": exp, "ROOT": exp.parent, "FILE": damaged, OUT: out}
    res = run_cli(*[fill.get(a, a) for a in argv])
    one_line_error(res["code"], res["err"], f"'{damaged}'")
    assert "is damaged (" in res["err"] or "not valid YAML" in res["err"]
    assert state_of(exp) == before
    assert not out.exists()


def test_ray_s_snapshot_files_are_all_checked_and_a_missing_tuner_pkl_is_one_line(
        stopped, run_cli, one_line_error, state_of, tmp_path):
    from dnet_tune.tune import ray_internals

    for pattern, _ in ray_internals.snapshot_files():  # each family the check reads is there
        assert list(stopped["copy"].glob(pattern)), pattern
    exp = tmp_path / "results" / "full"
    shutil.copytree(stopped["copy"], exp)
    (exp / "tuner.pkl").unlink()
    before = state_of(exp)
    res = run_cli("search", "--resume", exp)
    one_line_error(res["code"], res["err"], f"'{exp}' has no tuner.pkl", "a new --name")
    assert state_of(exp) == before


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_a_damaged_experiment_under_a_storage_is_named_and_the_others_are_still_reported(
        finished, run_cli, one_line_error, state_of, tmp_path, as_json):
    root = tmp_path / "results"
    for name in ("exp1", "exp2"):
        shutil.copytree(finished, root / name)
    damaged = root / "exp1" / "summary.parquet"  # listed first: a stop there hid exp2
    cut(damaged)
    before = state_of(root)
    res = run_cli("report", "--storage", root, *(["--json"] if as_json else []))
    one_line_error(res["code"], res["err"], f"'{damaged}'", "left out of this report")
    if as_json:
        assert [r["experiment"] for r in json.loads(res["out"])] == [str(root / "exp2")]
    else:
        shown = "".join(res["out"].split())  # the table may wrap the paths
        assert "".join(str(root / "exp2").split()) in shown and "exp1" not in shown
    assert state_of(root) == before

