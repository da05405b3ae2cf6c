"""Our terminal view of a search: a live status panel and a final table of the top trials.

Ray's own tables are turned off (verbose 0); this keeps ~400 lines of console output for 16
trials down to one live panel, while trial errors are still printed as they happen.
"""

from __future__ import annotations

import math
import time
from typing import Any, Self

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dnet_tune.console import pct
from dnet_tune.tune.plan import algorithm_note

# short labels keep the table readable in an 80-column log; dn.lr and optim.lr must stay apart
KEY_PARAMS = {"method.lam": "λ", "dn.lr": "dn_lr", "dn.hidden": "dn", "dn.input_mode": "in",
              "method.driver_target": "target", "method.meta_grad": "grad",
              "method.meta_interval": "k", "method.base_loss": "base", "optim.lr": "lr",
              "method.cdb_tau": "τ", "method.focal_gamma": "γ", "method.cb_beta": "β"}


class _LiveRegion:
    """A rich Live region redrawn from `_render()`; its last frame stays on screen, and
    messages printed meanwhile scroll above it."""

    console: Console
    live: Live

    def _start_live(self) -> None:
        self.live = Live(self._render(), console=self.console, refresh_per_second=2,
                         transient=False)

    def _render(self) -> RenderableType:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.update(self._render())
        self.live.__exit__(*exc)
        self.console.line()

    def note(self, message: str) -> None:
        self.console.print(message, soft_wrap=True)  # one line each, as logged


class SearchView(_LiveRegion):
    def __init__(self, console: Console, title: str, trials: int) -> None:
        self.console = console
        self.title = title
        self.trials = trials
        self.state: dict[str, str] = {}
        self.best: tuple[float, str, int] | None = None
        self.start = time.monotonic()
        self._start_live()

    def preload(self, statuses: dict[str, str]) -> None:
        """Trials that ended before a resume, so the counts cover the whole experiment."""
        self.state.update(statuses)

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
                  for s in ("running", "stopped", "finished", "diverged", "errored")}
        # a diverged trial is an answer about its config, not an error: counted, not shouted
        diverged = f"diverged {counts['diverged']} · " if counts["diverged"] else ""
        line = (f"[bold]{self.title}[/]  {len(self.state)}/{self.trials} trials started · "
                f"running {counts['running']} · stopped by ASHA {counts['stopped']} · "
                f"finished {counts['finished']} · {diverged}errored {counts['errored']} · "
                f"{time.monotonic() - self.start:.0f}s")
        best = (f"best so far: val_acc {pct(self.best[0])}% (trial {self.best[1]}, "
                f"epoch {self.best[2]})" if self.best else "best so far: -")
        return Group(Text.from_markup(line), Text(best))


class ProgressLine(_LiveRegion):
    """A live line for a phase counted in runs (the confirmation)."""

    def __init__(self, console: Console, title: str, total: int) -> None:
        self.console = console
        self.title = title
        self.total = total
        self.done = 0
        self.elapsed = 0.0
        self._start_live()

    def advance(self, elapsed: float) -> None:
        self.done += 1
        self.elapsed = elapsed
        self.live.update(self._render())

    def _render(self) -> Text:
        return Text.from_markup(f"[bold]{self.title}[/]  {self.done}/{self.total} runs done · "
                                f"{self.elapsed:.0f}s")


def comparison_table(rows: list[dict[str, Any]], title: str) -> Table:
    """One row per method: confirmed val, test mean ± 95% CI, shot groups, trials, compute.

    One decimal and a light frame keep it inside 80 columns (CI logs, narrow terminals).
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("method", "val", "test ±95%CI", "many", "med", "few", "trials", "compute"):
        table.add_column(col, justify="left" if col == "method" else "right", no_wrap=True)
    for r in rows:
        ci = r["test_ci95"]
        test = pct(r["test_mean"], 1) + (f" ±{100 * ci:.1f}" if _finite(ci) else "")
        table.add_row(r["method"], pct(r["val_mean"], 1), test, pct(r["test_many"], 1),
                      pct(r["test_medium"], 1), pct(r["test_few"], 1), str(r["trials"]),
                      _compute(r))
    return table


def difference_line(diff: dict[str, Any] | None) -> str:
    if diff is None:
        return ""
    ci = diff["diff_ci95"]
    seeds = diff["seeds"]
    head = (f"{diff['method']} − {diff['baseline']} (best baseline by val) on test: "
            f"{100 * diff['diff_mean']:+.2f}")
    if not _finite(ci):
        return f"{head} points, one run each: no interval, confirm over seeds to compare"
    verdict = ("significant" if diff["significant"]
               else "no significant difference (the interval contains 0)")
    return (f"{head} ± {100 * ci:.2f} points (95% CI, paired over seeds "
            f"{', '.join(map(str, seeds))}): {verdict}")


def _compute(r: dict[str, Any]) -> str:
    seconds = float(r.get("trial_seconds", 0.0)) + float(r.get("confirm_seconds", 0.0))
    gpu = float(r.get("gpu_seconds", 0.0)) + float(r.get("confirm_gpu_seconds", 0.0))
    text = f"{seconds / 60:.1f} min"
    return text + (f" ({gpu / 3600:.2f} GPU-h)" if gpu > 0 else "")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v: Any) -> str:
    """Short values for 80 columns; DN widths arrive as JSON text ("[64, 128]")."""
    if isinstance(v, float):
        return f"{v:.4g}" if 0.9 <= v < 1 else f"{v:.2g}"  # β = 0.9999 must not read as 1
    if isinstance(v, str) and v.startswith("["):
        return v.replace(" ", "")  # DN widths stored as JSON text: "[64,128]"
    return {"relative": "rel", "absolute": "abs", "detached": "det"}.get(str(v), str(v))


def status_line(rep: dict[str, Any]) -> str:
    """One line for a search that is not finished: how far it got, and what to do."""
    head = (f"{rep['experiment']} is {rep['status']}: {rep.get('trials_ended', 0)} of "
            f"{rep.get('trials_budget', '?')} trials ended, numbers are provisional (best so "
            f"far, not confirmed)")
    if rep["status"] == "interrupted":
        return f"{head}; continue with: dnet-tune search --resume {rep['experiment']}"
    return head


def print_report(console: Console, reports: list[dict[str, Any]], where: str) -> None:
    """`dnet-tune report`: per experiment, the comparison table, the difference, the choices."""
    if not reports:
        console.print(f"no finished experiments in '{where}'")
        return
    for rep in reports:
        status = "" if rep["status"] == "finished" else f" [{rep['status']}]"
        if rep["status"] != "finished":
            console.print(status_line(rep), soft_wrap=True)  # a command to copy: unbroken
        if not rep["rows"]:
            continue
        note = algorithm_note(rep.get("sampler", "tpe"), rep.get("scheduler", "asha"))
        console.print(comparison_table(rep["rows"], f"{rep['dataset']}: {rep['experiment']}"
                                                    f"{note}{status}"))
        if rep["difference"] is not None:
            console.print(difference_line(rep["difference"]))
        for r in rep["rows"]:
            params = " ".join(f"{label}={_fmt(r['config'][k])}"
                              for k, label in KEY_PARAMS.items() if k in r["config"])
            mark = " (winner)" if r["method"] == rep["winner"] else ""
            console.print(f"  {r['method']}{mark}: trial {r['trial_id']} {params}")
