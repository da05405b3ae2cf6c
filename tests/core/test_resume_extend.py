"""`train --resume` changes nothing silently; `--extend N` is a recorded, replayable choice; the
intra-op thread count is part of the config and set before any work."""

from __future__ import annotations

import itertools

import pyarrow.parquet as pq
import pytest
import torch

from dnet_tune.config import config_from_dict, config_to_dict, load_yaml
from dnet_tune.errors import UserError
from dnet_tune.run import resolve_config, train_to_dir
from dnet_tune.train import Trainer, load_checkpoint, save_checkpoint


def digits(epochs: int, method: str = "difficulty_net", *sets: str):
    return resolve_config(dataset="digits_lt", sets=list(sets),
                          overrides={"method": {"name": method}, "train": {"epochs": epochs}})


def rows(run) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"}
            for r in pq.read_table(run / "metrics.parquet").to_pylist()]


@pytest.mark.parametrize(("stop", "method"), [(3, "difficulty_net"), (2, "ce")])
def test_an_extension_is_recorded_and_its_replay_is_bit_identical(tmp_path, stop, method,
                                                                  capsys):
    """3 epochs, extended to 5 (after the last epoch, or from epoch 2 of an interrupted run);
    `train --config <run>/config.yaml` must give the same metrics, bit for bit."""
    run = tmp_path / "run"
    if stop == 3:
        train_to_dir(digits(3, method), run)
    else:  # a run stopped after 2 of its 3 epochs
        trainer = Trainer(digits(3, method))
        trainer.run_epoch()
        trainer.run_epoch()
        run.mkdir()
        save_checkpoint(trainer, str(run / "checkpoint.pt"))
    train_to_dir(None, run, resume=True, extend=2)
    assert "extended from 3 to 5 epochs at epoch" in capsys.readouterr().err
    recorded = load_yaml(run / "config.yaml")
    assert recorded["train"]["epochs"] == 5
    assert recorded["train"]["extensions"] == [{"at_epoch": stop, "from_epochs": 3,
                                                "to_epochs": 5, "lr": "stretch"}]
    assert load_checkpoint(str(run / "checkpoint.pt"))["config"] == recorded
    got = rows(run)
    assert [r["epoch"] for r in got] == [1, 2, 3, 4, 5]
    lrs = [r["lr"] for r in got]
    assert all(b <= a for a, b in itertools.pairwise(lrs))  # no restart of the cosine
    replay = tmp_path / "replay"
    train_to_dir(config_from_dict(recorded), replay)
    assert rows(replay) == got


def test_resume_without_extend_continues_to_the_recorded_length(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(digits(3, "ce"))
    trainer.run_epoch()
    run.mkdir()
    save_checkpoint(trainer, str(run / "checkpoint.pt"))
    final = train_to_dir(None, run, resume=True)
    assert final["last_epoch"] == 3
    assert load_yaml(run / "config.yaml")["train"]["extensions"] == []


def test_an_older_checkpoint_with_absolute_milestones_resumes_with_a_note(tmp_path, capsys):
    run = tmp_path / "run"
    trainer = Trainer(digits(2, "ce", "optim.schedule=step", "optim.milestone_fractions=[0.5]"))
    trainer.run_epoch()
    state = trainer.state_dict()
    old = state["config"]  # as written before fractions, thread counts and extensions
    del old["optim"]["milestone_fractions"], old["train"]["threads"], old["train"]["extensions"]
    old["optim"]["milestones"] = [1]
    run.mkdir()
    torch.save(state, run / "checkpoint.pt")
    train_to_dir(None, run, resume=True)
    err = capsys.readouterr().err
    assert "optim.milestones [1]" in err and "milestone_fractions [0.5]" in err
    assert [r["lr"] for r in rows(run)] == [0.05, 0.05 * 0.01]  # decayed at 0-based epoch 1


FLAGS = [("--seed", "7"), ("--set", "method.lam=3.0"), ("--method", "ce"), ("--epochs", "5"),
         ("--dataset", "digits_lt"), ("--config", "x.yaml"), ("--recipe", "paper"),
         ("--model", "small_cnn"), ("--device", "cpu"), ("--imbalance", "10"), ("--smoke",)]


def test_resume_refuses_every_flag_that_would_change_the_run(cli, tmp_path, one_line_error):
    """`--resume --seed 7 --set method.lam=3.0 --method ce` exited 0 and continued with seed 0,
    λ 0.3 and Difficulty-Net."""
    run = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "digits_lt", "--method", "ce", "--epochs", 1,
                       "--output", run, "--quiet")
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for flag in FLAGS:
        code, _, err = cli("train", "--output", run, "--resume", *flag)
        one_line_error(code, err, f"{flag[0]} cannot be combined with --resume")
        if flag[0] == "--epochs":
            assert "--extend N" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    code, _, err = cli("train", "--output", run, "--extend", 2)
    one_line_error(code, err, "--extend", "--resume")
    code, _, err = cli("train", "--output", run, "--resume", "--extend", 1, "--quiet")
    assert code == 0, err
    assert [r["epoch"] for r in rows(run)] == [1, 2]


# ----------------------------------------------------------------------------- threads


def test_the_configured_thread_count_is_set_before_any_work():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        trainer = Trainer(digits(1, "ce", "train.threads=1"))
        assert torch.get_num_threads() == 1 and trainer.cfg.train.threads == 1
        torch.set_num_threads(1)
        assert Trainer(digits(1, "ce", "train.threads=2")).cfg.train.threads == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_auto_threads_are_recorded_as_the_number_that_ran(tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cfg = digits(1, "ce")
        assert cfg.train.threads == "auto"
        train_to_dir(cfg, tmp_path / "run")
        assert load_yaml(tmp_path / "run" / "config.yaml")["train"]["threads"] == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", [0, -1, "all", 1.5])
def test_a_bad_thread_count_names_the_key(value):
    data = config_to_dict(digits(1))
    data["train"]["threads"] = value
    with pytest.raises(UserError, match=r"train\.threads"):
        config_from_dict(data)
