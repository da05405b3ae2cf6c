"""The tables rewritten while a search runs (`tune/faults/live_results.py`), driven step by step
the way Tune calls its callbacks, without a Ray run: when they are written, what they say of
trials Tune has not ended, and that a failed write never stops the search."""

from __future__ import annotations

import io
import pickle

import pyarrow.parquet as pq
from rich.console import Console

from dnet_tune.tune.faults.live_results import LiveTables
from dnet_tune.tune.results import TrialRecord
from dnet_tune.tune.view import SearchView


class Recorder:
    """What LiveTables reads of the search's recorder: its records, where to write, the
    scheduler whose snapshot a write waits for, the live view."""

    def __init__(self, exp, view=None, scheduler=None):
        self.exp = exp
        self.view = view
        self.scheduler = scheduler
        self.records = {}

    def add(self, trial_id, index, epochs, done=False):
        rec = TrialRecord(trial_id, "ce", {"optim.lr": 0.1}, {"method": {"name": "ce"}},
                          index=index, done=done)
        rec.rows = [{"epoch": e, "val_acc": 0.1 * e, "epoch_time_s": 1.0}
                    for e in range(1, epochs + 1)]
        self.records[trial_id] = rec


class Scheduler:
    def __init__(self, exp):
        self.exp = exp
        self.tables_at_wait = []

    def wait_for_snapshot(self):
        self.tables_at_wait.append((self.exp / "summary.parquet").exists())


def _summary(exp):
    return {r["trial_id"]: (r["status"], r["last_epoch"])
            for r in pq.read_table(exp / "summary.parquet").to_pylist()}


def test_written_when_a_trial_ends_after_tune_s_snapshot(tmp_path):
    scheduler = Scheduler(tmp_path)
    rec = Recorder(str(tmp_path), scheduler=scheduler)
    tables = LiveTables(rec, max_epochs=3, every_s=3600)
    rec.add("t2", 1, epochs=1)
    rec.add("t1", 0, epochs=2)
    tables.on_trial_result(1, [], None, {})
    tables.on_step_end(1, [])
    assert tables.writes == 0 and not (tmp_path / "summary.parquet").exists()  # not yet due
    rec.records["t1"].done = True
    tables.on_trial_complete(2, [], None)
    tables.on_step_end(2, [])
    assert tables.writes == 1
    assert scheduler.tables_at_wait == [False]  # it waited for the snapshot, then wrote
    # a trial Tune has not ended is unfinished, whatever its epochs; an ended one stopped
    # short of max_epochs was stopped (by ASHA)
    assert _summary(tmp_path) == {"t1": ("stopped", 2), "t2": ("unfinished", 1)}
    rows = pq.read_table(tmp_path / "trials.parquet").to_pylist()
    assert [(r["trial_id"], r["epoch"]) for r in rows] == [("t1", 1), ("t1", 2), ("t2", 1)]
    tables.on_step_end(3, [])
    assert tables.writes == 1  # nothing new: no write


def test_new_epochs_are_written_at_most_every_every_s_and_at_the_end(tmp_path):
    rec = Recorder(str(tmp_path))
    rec.add("t1", 0, epochs=1)
    tables = LiveTables(rec, max_epochs=3, every_s=0.0)
    tables.on_step_end(1, [])
    assert tables.writes == 0  # no epoch arrived
    tables.on_trial_result(1, [], None, {})
    tables.on_step_end(1, [])
    assert tables.writes == 1
    rec.add("t1", 0, epochs=3, done=True)
    tables.on_trial_error(2, [], None)  # an errored trial ended too
    tables.on_experiment_end([])
    assert tables.writes == 2 and _summary(tmp_path) == {"t1": ("finished", 3)}
    tables.on_experiment_end([])
    assert tables.writes == 2


def test_a_failed_write_is_said_once_and_the_search_goes_on(tmp_path):
    (tmp_path / "a_file").write_text("")
    out = io.StringIO()
    view = SearchView(Console(file=out, width=300), "exp", trials=2)
    rec = Recorder(str(tmp_path / "a_file" / "exp"), view=view)  # cannot be a folder
    rec.add("t1", 0, epochs=1, done=True)
    tables = LiveTables(rec, max_epochs=3)
    for step in (1, 2):
        tables.on_trial_complete(step, [], None)
        tables.on_step_end(step, [])
    assert tables.failed and tables.writes == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("could not update the result tables while running: ")


def test_no_experiment_folder_yet_means_no_write(tmp_path):
    rec = Recorder(None)
    rec.add("t1", 0, epochs=1, done=True)
    tables = LiveTables(rec, max_epochs=3)
    tables.on_trial_complete(1, [], None)
    tables.on_step_end(1, [])
    assert tables.writes == 0 and not tables.failed and not tables.ended


def test_a_restored_callback_keeps_its_settings_and_starts_clean(tmp_path):
    rec = Recorder(str(tmp_path))
    rec.add("t1", 0, epochs=1, done=True)
    tables = LiveTables(rec, max_epochs=4, every_s=12.0)
    tables.on_trial_complete(1, [], None)
    tables.on_step_end(1, [])
    tables.on_trial_result(2, [], None, {})
    restored = pickle.loads(pickle.dumps(tables))  # as in Tune's experiment snapshot
    assert (restored.max_epochs, restored.every_s) == (4, 12.0)
    assert list(restored.recorder.records) == ["t1"]
    assert (restored.writes, restored.dirty, restored.ended, restored.yaml_cache) == (
        0, False, False, {})
