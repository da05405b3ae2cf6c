"""The TensorBoard runs of a search (`tune/tensorboard_events.py`) without a Ray run: the tags
each result becomes, stepped by our epoch, and where each trial's run goes.

The callback is handed a stand-in for Ray's Trial with the three attributes it reads (trial_id,
config, local_path): a real Trial needs a StorageContext, which only Ray's private modules
build. test_report.py checks the same files from a real search."""

from __future__ import annotations

import math
import pickle
from types import SimpleNamespace

import pytest
from tb_events import event_tags, event_values

from dnet_tune.tune.tensorboard_events import TensorBoardCallback, scalar_tag


@pytest.mark.parametrize(("key", "tag"), [
    ("val_acc", "val/acc"), ("val_many", "val/many"), ("test_few", "test/few"),
    ("train_loss", "train/loss"), ("lr", "train/lr"), ("epoch_time_s", "time/epoch_s"),
    ("meta_loss", "other/meta_loss"), ("val", "other/val"), ("diverged", "other/diverged"),
])
def test_metric_names_become_tags_grouped_by_split(key, tag):
    assert scalar_tag(key) == tag


def _trial(tmp_path, trial_id, method="difficulty_net"):
    config = {"method.name": method} if method else {}
    return SimpleNamespace(trial_id=trial_id, config=config,
                           local_path=str(tmp_path / "exp" / f"trial_{trial_id}"))


# what Ray adds to every result (numbers among them), beside the trainer's epoch
RAY_BOOKKEEPING = {"training_iteration": 3, "time_total_s": 12.5, "time_this_iter_s": 4.0,
                   "timestamp": 1_700_000_000, "pid": 4242, "iterations_since_restore": 1,
                   "time_since_restore": 4.0, "done": False, "trial_id": "t1",
                   "hostname": "node-1", "node_ip": "10.0.0.1", "date": "2026-01-01_00-00-00",
                   "config": {"optim.lr": 0.1}}


def _result(epoch, **extra):
    return {"epoch": epoch, "val_acc": 0.5 + 0.1 * epoch, "lr": 0.1 / epoch,
            "class_weight": [0.5, 1.5, 1.0], "diverged": False, "train_loss": math.nan,
            "device": "cpu", "wide": [0.01 * c for c in range(101)], "empty": [],
            **RAY_BOOKKEEPING, **extra}


def test_each_epoch_s_numbers_per_class_values_and_nothing_of_ray_s(tmp_path):
    callback = TensorBoardCallback()
    trial = _trial(tmp_path, "t1")
    for epoch in (1, 2):
        callback.on_trial_result(epoch, [trial], trial, _result(epoch))
    callback.on_trial_complete(2, [trial], trial)
    values = event_values(tmp_path / "exp" / "tensorboard" / "difficulty_net" / "t1")
    assert values["val/acc"] == [(1, pytest.approx(0.6)), (2, pytest.approx(0.7))]
    assert values["train/lr"] == [(1, pytest.approx(0.1)), (2, pytest.approx(0.05))]
    # one scalar per class, under the vector's name, and a histogram of all of them
    assert values["class_weight/class_001"] == [(1, 1.5), (2, 1.5)]
    assert values["class_weight/all_classes"] == [(1, None), (2, None)]
    # beyond 100 classes a chart per class is unusable: the histogram alone
    assert values["wide/all_classes"] == [(1, None), (2, None)]
    assert set(values) == {"val/acc", "train/lr", "class_weight/class_000",
                           "class_weight/class_001", "class_weight/class_002",
                           "class_weight/all_classes", "wide/all_classes"}
    # the NaN loss, the flag, the text and Ray's bookkeeping (training_iteration restarts
    # after a restore: our epoch is the step) are not charts
    assert callback.writers == {}  # closed when the trial ended


def test_one_run_per_trial_under_its_method_and_none_without_an_epoch(tmp_path):
    callback = TensorBoardCallback()
    first, second, unnamed = (_trial(tmp_path, "t1", "ce"), _trial(tmp_path, "t2", "ce"),
                              _trial(tmp_path, "t3", None))
    callback.on_trial_result(1, [first], first, {"epoch": 1, "val_acc": 0.4})
    callback.on_trial_result(1, [second], second, {"epoch": 3, "val_acc": 0.6})
    callback.on_trial_result(1, [unnamed], unnamed, {"epoch": 1, "val_acc": 0.1})
    # a result that is not an epoch of ours (e.g. Ray's own on a restore) writes nothing
    callback.on_trial_result(1, [first], first, {"epoch": None, "val_acc": 0.9})
    callback.on_trial_result(1, [first], first, {"val_acc": 0.9, "training_iteration": 7})
    callback.on_trial_error(1, [first], first)
    callback.on_experiment_end([second, unnamed])
    runs = tmp_path / "exp" / "tensorboard"
    assert event_tags(runs / "ce" / "t1") == {"val/acc": [1]}
    assert event_tags(runs / "ce" / "t2") == {"val/acc": [3]}
    assert event_tags(runs / "trial" / "t3") == {"val/acc": [1]}
    assert callback.writers == {}


def test_a_pickled_callback_leaves_its_open_files_behind(tmp_path):
    callback = TensorBoardCallback()
    first, second = _trial(tmp_path, "t1"), _trial(tmp_path, "t2")
    callback.on_trial_result(1, [first], first, {"epoch": 1, "val_acc": 0.4})
    restored = pickle.loads(pickle.dumps(callback))  # what the Tuner's state does with it
    assert list(callback.writers) == ["t1"] and restored.writers == {}
    restored.on_trial_result(2, [second], second, {"epoch": 2, "val_acc": 0.5})
    callback.on_trial_result(2, [first], first, {"epoch": 2, "val_acc": 0.6})
    callback.on_experiment_end([first])
    restored.on_experiment_end([second])
    runs = tmp_path / "exp" / "tensorboard" / "difficulty_net"
    assert event_tags(runs / "t1") == {"val/acc": [1, 2]}
    assert event_tags(runs / "t2") == {"val/acc": [2]}
