"""The live lines of a search (`tune/view.py`) as they are left on a console that is not a
terminal (a log file, `ray job submit`): the last frame, with the messages printed meanwhile
above it."""

from __future__ import annotations

import io
import re

from rich.console import Console

from dnet_tune.tune.view import ProgressLine, SearchView


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, highlight=False), out


def test_the_search_panel_counts_every_status_and_keeps_the_best_val():
    console, out = _console()
    view = SearchView(console, "digits_lt: exp1", trials=8)
    with view:
        view.preload({"old1": "finished", "old2": "stopped"})  # ended before a resume
        view.result("t1", {"val_acc": 0.5, "epoch": 1})
        view.result("t2", {"val_acc": 0.75, "epoch": 2})
        view.result("t1", {"val_acc": 0.6, "epoch": 2})  # not better than t2's
        view.result("t3", {"epoch": 1})  # no val_acc: counted, not a best
        view.done("t2", "diverged")
        view.error("t4", "worker died")
        view.note("a note")
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["trial t4 failed: worker died", "a note"]
    assert re.fullmatch(r"digits_lt: exp1  6/8 trials started · running 2 · stopped by ASHA 1 "
                        r"· finished 1 · diverged 1 · errored 1 · \d+s", lines[2]), lines[2]
    # a diverged trial's epochs before it diverged still count: it was the best so far
    assert lines[3] == "best so far: val_acc 75.00% (trial t2, epoch 2)"


def test_without_divergence_or_results_the_panel_says_so():
    console, out = _console()
    with SearchView(console, "exp2", trials=3) as view:
        view.done("t1", "errored")
    first, best = out.getvalue().splitlines()
    assert "diverged" not in first  # named only when it happened
    assert first.startswith("exp2  1/3 trials started · running 0 · stopped by ASHA 0 · "
                            "finished 0 · errored 1 · ")
    assert best == "best so far: -"


def test_the_confirmation_line_counts_runs_and_seconds():
    console, out = _console()
    with ProgressLine(console, "confirmation", total=6) as line:
        line.advance(3.2)
        line.advance(61.7)
        line.note("[red]confirmation run ce t1 seed 3 failed:[/] boom")
    assert out.getvalue().splitlines() == ["confirmation run ce t1 seed 3 failed: boom",
                                           "confirmation  2/6 runs done · 62s"]
