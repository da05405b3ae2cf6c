"""A search's trials keep the schedule's shape at any `max_epochs`, and carry the intra-op thread
count they ran with, which an exported config's `train` then sets."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from dnet_tune.config import config_from_dict
from dnet_tune.errors import UserError
from dnet_tune.fileio import table_to_rows
from dnet_tune.schedule import lr_at
from dnet_tune.tune.checked_search import base_config
from dnet_tune.tune.plan import SearchRequest, budget_for
from dnet_tune.tune.space import default_space_path
from dnet_tune.tune.space_file import load_space

SPACES = ["cifar10_lt.yaml", "cifar100_lt.yaml", "cifar_lt_two_stage.yaml"]


def _base(space_file: str, **request: object) -> dict:
    path = Path(default_space_path("cifar10_lt")).parent / space_file
    req = SearchRequest(dataset="cifar10_lt", space=str(path), **request)  # type: ignore[arg-type]
    space = load_space(path)
    return base_config(req, space, budget_for(req, space), "difficulty_net")


@pytest.mark.parametrize("space_file", SPACES)
@pytest.mark.parametrize(("max_epochs", "steps"), [(60, [48, 54]), (20, [16, 18])])
def test_cifar_trials_decay_at_the_same_fractions_whatever_max_epochs(space_file, max_epochs,
                                                                      steps):
    """The CIFAR spaces fixed [48, 54]: with --max-epochs below 48 no trial ever decayed."""
    cfg = config_from_dict(_base(space_file, max_epochs=max_epochs))
    lrs = [lr_at(cfg, e) for e in range(max_epochs)]
    assert [e for e in range(1, max_epochs) if lrs[e] < lrs[e - 1] * 0.5] == steps


def test_a_search_too_short_for_the_warm_up_is_one_line_and_smoke_drops_the_warm_up():
    with pytest.raises(UserError, match=r"optim\.warmup_epochs"):
        config_from_dict(_base("cifar10_lt.yaml", max_epochs=4))
    smoke = config_from_dict(_base("cifar10_lt.yaml", smoke=True))
    assert smoke.optim.warmup_epochs == 0 and smoke.train.epochs == 1


@pytest.mark.parametrize(("cpus", "sets", "threads"), [(1.0, [], 1), (2.0, [], 2), (0.5, [], 1),
                                                       (1.0, ["train.threads=3"], 3)])
def test_a_trial_config_holds_a_thread_count_never_auto(cpus, sets, threads):
    base = _base("cifar10_lt.yaml", cpus_per_trial=cpus, sets=sets)
    assert base["train"]["threads"] == threads


def test_a_trial_records_the_threads_it_ran_with_and_its_export_sets_them(
        ray_local, run_cli, tmp_path):
    """Ray ran trials with OMP_NUM_THREADS = cpus_per_trial while `train` used every core, so an
    exported config did not reproduce its run (test 0.6450 against 0.6475); nothing recorded it."""
    res = run_cli("search", "--dataset", "digits_lt", "--methods", "ce", "--trials", 1,
                  "--max-epochs", 2, "--grace-period", 1, "--cpus-per-trial", 2, "--no-confirm",
                  "--storage", tmp_path, "--name", "threads", "--quiet")
    assert res["code"] == 0, res["err"]
    exp = tmp_path / "threads"
    epochs = table_to_rows(pq.read_table(exp / "trials.parquet"))
    assert {r["threads"] for r in epochs} == {2}
    (trial,) = table_to_rows(pq.read_table(exp / "summary.parquet"))
    assert yaml.safe_load(trial["config_yaml"])["train"]["threads"] == 2
    best = exp / "best" / "ce.yaml"
    assert yaml.safe_load(best.read_text())["provenance"]["threads"] == 2
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # a `train` that would otherwise run on one thread
        res = run_cli("train", "--config", best, "--output", tmp_path / "again", "--quiet")
        assert res["code"] == 0, res["err"]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    again = table_to_rows(pq.read_table(tmp_path / "again" / "metrics.parquet"))
    by_epoch = {r["epoch"]: r["val_acc"] for r in epochs}
    assert [r["val_acc"] for r in again] == [by_epoch[1], by_epoch[2]]
