"""Our terminal view of a running search: a live status panel, and a live line for the
confirmation (the tables printed at the end are the report's: `report/text.py`).

Ray's own tables are turned off (verbose 0); this keeps ~400 lines of console output for 16
trials down to one live panel, while trial errors are still printed as they happen.
"""

from __future__ import annotations

import time
from typing import Any, Self

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from dnet_tune.console import pct


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
        # one line: it ends with the path of the trial's error.txt, to copy
        self.console.print(f"[red]trial {trial_id} failed:[/] {message}", soft_wrap=True)
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
