"""Our terminal view of a search: a live status panel and a final table of the top trials.

Ray's own tables are turned off (verbose 0); this keeps ~400 lines of console output for 16
trials down to one live panel, while trial errors are still printed as they happen.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dnet_tune.console import pct

# short labels keep the table readable in an 80-column log; dn.lr and optim.lr must stay apart
KEY_PARAMS = {"method.lam": "λ", "dn.lr": "dn_lr", "dn.hidden": "dn", "dn.input_mode": "in",
              "method.driver_target": "target", "method.meta_grad": "grad",
              "method.meta_interval": "k", "optim.lr": "lr", "method.cdb_tau": "τ",
              "method.focal_gamma": "γ", "method.cb_beta": "β"}


class SearchView:
    def __init__(self, console: Console, title: str, trials: int) -> None:
        self.console = console
        self.title = title
        self.trials = trials
        self.state: dict[str, str] = {}
        self.best: tuple[float, str, int] | None = None
        self.start = time.monotonic()
        self.live = Live(self._render(), console=console, refresh_per_second=2, transient=False)

    def __enter__(self) -> SearchView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.update(self._render())
        self.live.__exit__(*exc)
        self.console.line()

    def result(self, trial_id: str, metrics: dict[str, Any]) -> None:
        self.state[trial_id] = "running"
        v = metrics.get("val_acc")
        if v is not None and (self.best is None or v > self.best[0]):
            self.best = (float(v), trial_id, int(metrics["epoch"]))
        self.live.update(self._render())

    def done(self, trial_id: str, status: str) -> None:
        self.state[trial_id] = status
        self.live.update(self._render())

    def error(self, trial_id: str, message: str) -> None:
        self.state[trial_id] = "errored"
        self.console.print(f"[red]trial {trial_id} failed:[/] {message}")
        self.live.update(self._render())

    def _render(self) -> Group:
        counts = {s: sum(v == s for v in self.state.values())
                  for s in ("running", "stopped", "finished", "errored")}
        line = (f"[bold]{self.title}[/]  {len(self.state)}/{self.trials} trials started · "
                f"running {counts['running']} · stopped by ASHA {counts['stopped']} · "
                f"finished {counts['finished']} · errored {counts['errored']} · "
                f"{time.monotonic() - self.start:.0f}s")
        best = (f"best so far: val_acc {pct(self.best[0])}% (trial {self.best[1]}, "
                f"epoch {self.best[2]})" if self.best else "best so far: -")
        return Group(Text.from_markup(line), Text(best))


def top_table(summary: list[dict[str, Any]], n: int = 5) -> Table:
    rows = sorted((r for r in summary if r["best_val_acc"] is not None and r["role"] == "search"),
                  key=lambda r: -r["best_val_acc"])[:n]
    baseline = [r for r in summary if r["role"] == "baseline"]
    table = Table(title="top trials (selected on val; test reported, never optimised)")
    for col in ("trial", "status", "epoch", "val", "test", "few"):
        table.add_column(col, justify="left" if col in ("trial", "status") else "right",
                         no_wrap=True)
    table.add_column("key hyperparameters", overflow="fold")
    for r in [*rows, *baseline]:
        params = " ".join(f"{label}={_fmt(r.get(f'config/{k}'))}"
                          for k, label in KEY_PARAMS.items() if r.get(f"config/{k}") is not None)
        if r["role"] == "baseline":
            params = "ce, same epochs and seed (baseline)"
        table.add_row(r["trial_id"], r["status"], str(r["best_epoch"]), pct(r["best_val_acc"]),
                      pct(r["test_acc_at_best"]), pct(r["test_few_at_best"]), params)
    return table


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2g}"
    if isinstance(v, str) and v.startswith("["):
        return v.replace(" ", "")  # DN widths stored as JSON text: "[64,128]"
    return {"relative": "rel", "absolute": "abs", "detached": "det"}.get(str(v), str(v))


def print_report(console: Console, rows: list[dict[str, Any]], storage: str) -> None:
    """`dnet-tune report`: a table of accuracies, then each winner's trial and parameters."""
    if not rows:
        console.print(f"no finished experiments under '{storage}'")
        return
    table = Table(title=f"best per dataset in {storage} (%; many/medium/few and ce on test)")
    for col in ("dataset", "method", "val", "test", "many", "medium", "few", "ce"):
        table.add_column(col, justify="left" if col in ("dataset", "method") else "right",
                         no_wrap=True)
    for r in rows:
        table.add_row(r["dataset"], r["method"], pct(r["val_acc"]), pct(r["test_acc"]),
                      pct(r["test_many"]), pct(r["test_medium"]), pct(r["test_few"]),
                      pct(r["baseline_test_acc"]))
    console.print(table)
    for r in rows:
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(r["config"].items()))
        console.print(f"[bold]{r['dataset']}[/]: trial {r['trial_id']} epoch {r['epoch']} of "
                      f"{r['experiment']}\n  {params}")


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
