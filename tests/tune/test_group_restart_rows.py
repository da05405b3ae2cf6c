"""A group restarted from Ray Train's checkpoint after the driver died: its first report carries
the rows rank 0 had reported up to that checkpoint (`trainable.EARLIER_KEY`), and the driver's
Recorder and studies fill the epochs that its last experiment snapshot missed (the checkpoint
can be ahead of the snapshot), keeping what they already had.

Driven the way Tune calls them, with Ray's own stub `Trial`, a real OptunaSearch and a real
live view; the whole path, with a real kill -9, is `test_group_resume.py` (slow)."""

from __future__ import annotations

import io
import json

import optuna
from ray.tune.experiment import Trial
from ray.tune.search.optuna import OptunaSearch
from rich.console import Console

from dnet_tune.tune import ray_internals
from dnet_tune.tune.per_method import PerMethodSearcher
from dnet_tune.tune.runner import Recorder
from dnet_tune.tune.sampling import METHOD_KEY, define_by_run
from dnet_tune.tune.space import default_space_path
from dnet_tune.tune.space_file import load_space
from dnet_tune.tune.trainable import EARLIER_KEY, GROUP_KEY, TrialSetup
from dnet_tune.tune.view import SearchView


def _row(epoch: int, val: float) -> dict:
    return {"epoch": epoch, "val_acc": val, "best_val_acc": val, "test_class_acc": [val, 0.0],
            "val_many": float("nan"), "node_id": "n0", "device": "cpu"}


def _restart_report(epoch: int, earlier: list[dict]) -> dict:
    """Rank 0's first report after the restart, as Tune hands it to the callbacks."""
    return {**_row(epoch, 0.1 * epoch), GROUP_KEY: "ab12", "training_iteration": 1,
            EARLIER_KEY: json.dumps([{**r, GROUP_KEY: "old"} for r in earlier])}


def test_the_recorder_fills_the_epochs_its_snapshot_missed_and_says_so():
    out = io.StringIO()
    view = SearchView(Console(file=out, width=200), "t", trials=1)
    rec = Recorder(TrialSetup(bases={"ce": {"method": {"name": "ce"}}}, virtual=frozenset()),
                   view)
    trial = Trial("fake", config={METHOD_KEY: "ce"}, trial_id="t0", stub=True)
    for e in (1, 2):  # what the restored snapshot held
        rec.on_trial_result(e, [], trial, _row(e, 0.1 * e))
    kept = [dict(r) for r in rec.records["t0"].rows]
    # the group's checkpoint was at epoch 4; epoch 2 in its rows differs only to show which wins
    earlier = [_row(1, 0.1), _row(2, 0.99), _row(3, 0.3), _row(4, 0.4)]
    rec.on_trial_result(3, [], trial, _restart_report(5, earlier))
    rows = rec.records["t0"].rows
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    same = json.dumps  # the rows hold NaN (a split not evaluated), which never equals itself
    assert same(rows[:2]) == same(kept)  # what the driver had is kept
    assert same(rows[2:4]) == same([_row(3, 0.3), _row(4, 0.4)])  # NaN, lists: as reported
    assert all(GROUP_KEY not in r and EARLIER_KEY not in r for r in rows)
    assert "trial t0: epochs 3-4 recorded from its group's checkpoint" in out.getvalue()
    # a later report without rows, or a restart whose rows were all known, fills nothing new
    rec.on_trial_result(4, [], trial, _restart_report(6, [*earlier, _row(5, 0.5)]))
    assert [r["epoch"] for r in rec.records["t0"].rows] == [1, 2, 3, 4, 5, 6]
    assert out.getvalue().count("recorded from its group's checkpoint") == 1


def test_the_study_gets_the_missed_epochs_as_intermediate_values():
    space = load_space(default_space_path("digits_lt"))
    sub = OptunaSearch(space=define_by_run(space, "ce"), metric="best_val_acc", mode="max",
                       sampler=optuna.samplers.TPESampler(seed=0))
    searcher = PerMethodSearcher({"ce": sub}, 1, metric="best_val_acc", mode="max")
    searcher.suggest("t0")
    searcher.on_trial_result("t0", _row(1, 0.1))
    searcher.on_trial_result("t0", _restart_report(4, [_row(1, 0.7), _row(2, 0.2), _row(3, 0.3)]))
    (trial,) = ray_internals.optuna_study(sub).get_trials(deepcopy=False)
    # epoch 1 was in the study already and stays as it was
    assert trial.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
