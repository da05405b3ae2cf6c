"""A group trial whose TorchTrainer starts again after its last epoch (its driver died between
the group's last checkpoint and the trial's end, then `--resume`): nothing is left to train, so
every rank reports the last epoch again, rank 0's report with the rows of its checkpoint
(`trainable.EARLIER_KEY`), and the run ends instead of waiting for a report that never comes.

Real local Ray (2 CPUs), real Ray Train V2 groups of 2 workers; slow (`pytest -m slow`). The
driver's side of these rows is `test_group_restart_rows.py`, the whole kill -9 path
`test_group_resume.py` (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
from ray import train

from dnet_tune.tune.checked_search import plan_search
from dnet_tune.tune.plan import Resources, SearchRequest
from dnet_tune.tune.train_trial import REPORTS_FILE, _worker_loop, group_trainer
from dnet_tune.tune.trainable import EARLIER_KEY, DataHandle

EPOCHS = 2


def reports_to(path: Path) -> train.UserCallback:
    """A callback that appends every report of all ranks to `path`. It runs in Ray Train's
    controller, where this test module cannot be imported: a class made here is pickled by
    value."""

    class Reports(train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            with open(path, "a") as f:
                f.write(json.dumps({"ranks": metrics, "checkpoint": checkpoint is not None})
                        + "\n")

    return Reports()


def _reports(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow  # two Ray Train groups, ~30 s; the suite is over its time already
def test_a_group_restarted_after_its_last_epoch_reports_it_again_with_its_rows(ray_local,
                                                                               tmp_path):
    req = SearchRequest(dataset="digits_lt", methods=["ce"], smoke=True, max_epochs=EPOCHS,
                        workers_per_trial=2, cpus_per_trial=1)
    plan = plan_search(req)
    loop = {"config": plan.bases["ce"], "data": DataHandle(ray.put(plan.dataset))}
    res = Resources(gpus=0, gpus_per_trial=0, cpus_per_trial=1, slots=1, workers_per_trial=2)
    first, again = tmp_path / "first.jsonl", tmp_path / "again.jsonl"
    group_trainer(_worker_loop, loop, res, str(tmp_path), callbacks=[reports_to(first)]).fit()
    ran = _reports(first)
    assert [r["ranks"][0]["epoch"] for r in ran] == list(range(1, EPOCHS + 1))
    assert all(EARLIER_KEY not in rank for r in ran for rank in r["ranks"])
    # the same run started again, as a restarted trial's new TorchTrainer is: same folder, name
    group_trainer(_worker_loop, loop, res, str(tmp_path), callbacks=[reports_to(again)]).fit()
    (last,) = _reports(again)  # one report per rank, nothing trained
    rank0 = last["ranks"][0]
    assert rank0["epoch"] == EPOCHS and not last["checkpoint"]
    rows = json.loads(rank0[EARLIER_KEY])
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    assert [r["val_acc"] for r in rows] == [r["ranks"][0]["val_acc"] for r in ran]
    kept = sorted(c for c in (tmp_path / "train").glob("checkpoint_*") if c.is_dir())
    assert json.loads((kept[-1] / REPORTS_FILE).read_text()) == rows
