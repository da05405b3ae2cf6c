"""The result tables rewritten while the search runs, so a killed driver loses (almost) nothing.

trials.parquet and summary.parquet are rewritten atomically (temp file + rename) at the end of
every Tune step in which a trial ended (finished, stopped, diverged or errored) and otherwise at
most every `every_s` seconds while new epochs arrive. After a kill -9 of the driver they hold
every epoch Tune had reported up to the last write; unfinished trials have status
`unfinished`. The write comes at the end of the step, after Tune's own experiment snapshot,
which `PerMethodScheduler.snapshot_soon` makes happen in the same step when a trial ends: the tables
never call a trial ended that Tune would re-run on a resume (the write waits until that
snapshot has been copied to the storage: `PerMethodScheduler.wait_for_snapshot`).

Cost: one write is two small Parquet files built from the records in memory (each trial's
resolved config is turned into YAML once and cached); bench/load.py measures it on 200 trials.
"""

from __future__ import annotations

import time
from typing import Any

from ray import tune

from dnet_tune.tune.results import TrialRecord, summary_rows, write_tables


class LiveTables(tune.Callback):
    def __init__(self, recorder: Any, max_epochs: int, every_s: float = 30.0) -> None:
        self.recorder = recorder  # the Recorder: its records, and where to write (its `exp`)
        self.max_epochs = max_epochs
        self.every_s = every_s
        self.ended = False  # a trial ended in this step: write at its end
        self.dirty = False  # epochs arrived since the last write
        self.last = time.monotonic()
        self.writes = 0
        self.failed = False
        self.yaml_cache: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"recorder": self.recorder, "max_epochs": self.max_epochs,
                "every_s": self.every_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["recorder"], state["max_epochs"], state["every_s"])  # type: ignore[misc]

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                        result: dict[str, Any], **info: Any) -> None:
        self.dirty = True

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:
        self.ended = True

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.ended = True

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.ended or (self.dirty and time.monotonic() - self.last >= self.every_s):
            self.write()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self.ended or self.dirty:
            self.write()

    def write(self) -> None:
        exp = getattr(self.recorder, "exp", None)
        self.ended = self.dirty = False
        self.last = time.monotonic()
        if exp is None:
            return
        scheduler = getattr(self.recorder, "scheduler", None)
        if scheduler is not None:
            scheduler.wait_for_snapshot()
        records: list[TrialRecord] = sorted(self.recorder.records.values(),
                                            key=lambda r: r.index)
        try:
            write_tables(exp, records, summary_rows(records, self.max_epochs, self.yaml_cache),
                         [])
        except Exception as exc:  # the search goes on; the final write reports any failure
            if not self.failed and getattr(self.recorder, "view", None) is not None:
                self.recorder.view.note(f"[yellow]could not update the result tables while "
                                        f"running:[/] {exc}")
            self.failed = True
            return
        self.writes += 1
