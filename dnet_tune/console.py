"""Rich terminal views shared by the commands (progress of a run, result tables)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dnet_tune.shot_groups import SHOT_GROUPS


def make_console(quiet: bool = False) -> Console:
    return Console(stderr=False, quiet=quiet, highlight=False)


def print_copyable(console: Console, line: str) -> None:
    """A line a user copies (a path, a `--resume` or `export` command), printed as one line.

    Rich wraps text at the console's width, and when stdout is a file or a pipe (a log, `ray job
    submit`) it assumes 80 columns: a path broken there pastes as two. Taken literally too: a
    path's `[...]` is no markup and its `:name:` no emoji code.
    """
    console.print(line, soft_wrap=True, markup=False, emoji=False)


def pct(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{100 * float(v):.{digits}f}"


def epoch_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]epoch"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def epoch_status(m: dict[str, Any]) -> str:
    stage = "stage 2  " if m.get("stage") == 2 else ""
    return (f"{stage}val {pct(m['val_acc'])}%  loss {m['train_loss']:.3f}  "
            f"lr {m['lr']:.3g}  {m['epoch_time_s']:.1f}s/epoch")


def final_table(final: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("split")
    for col in ("overall", *SHOT_GROUPS):
        table.add_column(col, justify="right")
    for split in ("val", "test"):
        table.add_row(split, *(pct(final[f"{split}_{k}"]) for k in ("acc", *SHOT_GROUPS)))
    return table
