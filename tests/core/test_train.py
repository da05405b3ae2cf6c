"""The training loop on digits_lt: every method learns, resume is exact, outputs round-trip."""

import dataclasses
import json

import pyarrow.parquet as pq
import pytest
import torch
from stopped_runs import stop_and_resume

from dnet_tune.config import config_from_dict, load_yaml, resolve_threads
from dnet_tune.method.difficulty_net import class_weights
from dnet_tune.method.methods import METHODS
from dnet_tune.run import resolve_config, train_to_dir
from dnet_tune.train import Trainer, load_checkpoint

CHANCE = 0.1  # digits: 10 balanced classes in V and test


def digits(method: str, epochs: int, **sets: object):
    items = [f"{k}={v}" for k, v in sets.items()]
    return resolve_config(dataset="digits_lt", sets=items,
                          overrides={"method": {"name": method}, "train": {"epochs": epochs}})


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_beats_chance_by_a_wide_margin(method):
    trainer = Trainer(digits(method, 6))
    history = list(trainer.fit())
    assert len(history) == 6
    assert trainer.best is not None
    assert trainer.best["val_acc"] > CHANCE + 0.4
    assert trainer.best["test_acc"] > CHANCE + 0.4
    for key in ("val_many", "val_medium", "val_few", "test_many", "test_medium", "test_few"):
        assert 0.0 <= history[-1][key] <= 1.0


def test_difficulty_net_records_a_d_w_and_uses_zero_a_in_epoch_one():
    trainer = Trainer(digits("difficulty_net", 2))
    first, second = list(trainer.fit())
    assert first["class_acc_meta"] == [0.0] * 10  # a is all zeros during epoch 0 (CIFAR rule)
    assert first["difficulty"] == pytest.approx([0.5] * 10)  # no bias: uniform at a = 0
    assert any(v > 0 for v in second["class_acc_meta"])
    assert sum(second["class_weight"]) == pytest.approx(10.0, rel=1e-5)


def test_recorded_class_weights_are_those_the_epoch_ended_with():
    """A row's d and w are φ's after the epoch's last Difficulty-Net step, applied to the `a`
    that epoch used; they used to be taken before the steps, one epoch behind (epoch 2 showed
    uniform weights while those in use had moved well away from 1)."""
    trainer = Trainer(digits("difficulty_net", 2, **{"dn.lr": 0.01}))
    first, second = list(trainer.fit())
    with torch.no_grad():
        d = trainer.method.dn(torch.tensor(second["class_acc_meta"]))
    assert second["difficulty"] == pytest.approx(d.tolist(), abs=1e-6)
    assert second["class_weight"] == pytest.approx(class_weights(d).tolist(), abs=1e-6)
    assert max(second["class_weight"]) - min(second["class_weight"]) > 0.1  # not uniform
    assert first["class_weight"] == pytest.approx([1.0] * 10)  # a = 0 all epoch: uniform


def test_in_epoch_zero_phi_moves_only_by_adam_s_weight_decay_about_dn_lr_per_step():
    """What the README says of epoch 0 with `acc_refresh: after_epoch`: a = 0, so φ (no bias)
    gets no gradient, and Adam's coupled weight decay (grad = wd·φ, normalised by its own
    scale) moves each weight towards 0 by about dn.lr per step, whatever dn.weight_decay is."""
    moved = {}
    for wd in (0.0, 1e-4, 1e-2):
        trainer = Trainer(digits("difficulty_net", 1, **{"dn.lr": 1e-3, "dn.weight_decay": wd,
                                                         "method.meta_grad": "full"}))
        before = torch.cat([p.detach().flatten() for p in trainer.method.dn.parameters()])
        trainer.run_epoch()
        after = torch.cat([p.detach().flatten() for p in trainer.method.dn.parameters()])
        grads = [p.grad for p in trainer.method.dn.parameters() if p.grad is not None]
        assert all(torch.count_nonzero(g) == 0 for g in grads)
        moved[wd] = (after - before, before, trainer.method.iteration)
    assert torch.count_nonzero(moved[0.0][0]) == 0  # no decay: φ stays where it started
    for wd in (1e-4, 1e-2):
        delta, start, steps = moved[wd]
        far = start.abs() > 2 * steps * 1e-3  # weights that cannot cross 0 within the epoch
        assert torch.all(torch.sign(delta[far]) == -torch.sign(start[far]))
        per_step = delta[far].abs() / steps
        assert per_step.min() > 0.9e-3 and per_step.max() < 1.0001e-3
    far = moved[1e-4][1].abs() > 2 * moved[1e-4][2] * 1e-3
    torch.testing.assert_close(moved[1e-4][0][far], moved[1e-2][0][far], rtol=0.05, atol=0)


def test_per_class_test_accuracy_agrees_with_the_overall_and_group_numbers():
    trainer = Trainer(digits("ce", 2))
    for m in trainer.fit():
        per_class = m["test_class_acc"]
        counts = trainer.ds.test.counts(trainer.num_classes)
        overall = sum(a * n for a, n in zip(per_class, counts, strict=True)) / sum(counts)
        assert overall == pytest.approx(m["test_acc"], abs=1e-6)
        for group, classes in trainer.groups.items():
            if classes:
                mean = sum(per_class[c] for c in classes) / len(classes)
                assert mean == pytest.approx(m[f"test_{group}"], abs=1e-6)


def _strip_time(rows):
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]


@pytest.mark.parametrize("meta_grad", ["full", "detached"])
def test_resume_from_a_mid_run_checkpoint_reproduces_the_run_exactly(tmp_path, meta_grad):
    cfg = digits("difficulty_net", 4, **{"method.meta_grad": meta_grad,
                                         "data.augment": "crop_flip"})
    full = Trainer(cfg)
    uninterrupted = list(full.fit())

    resumed = stop_and_resume(cfg, 2, tmp_path / "ckpt.pt")
    rest = list(resumed.fit())
    assert [m["epoch"] for m in rest] == [3, 4]
    assert _strip_time(resumed.history) == _strip_time(uninterrupted)
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_run_directory_outputs_and_config_round_trip(tmp_path):
    cfg = digits("difficulty_net", 3)
    out = tmp_path / "run"
    final = train_to_dir(cfg, out)
    written = config_from_dict(load_yaml(out / "config.yaml"))
    # `threads: auto` is recorded as the number that ran, `augment_span: auto` as the span
    # (per batch on the CPU), `cuda_graph: auto` as what ran (false: eager on the CPU)
    ran = resolve_threads(cfg, torch.get_num_threads())
    assert written == dataclasses.replace(
        ran, data=dataclasses.replace(ran.data, augment_span="batch"),
        train=dataclasses.replace(ran.train, cuda_graph=False))
    assert written.train.threads == torch.get_num_threads()
    assert cfg.train.cuda_graph == "auto" and written.train.cuda_graph is False
    table = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [r["epoch"] for r in table] == [1, 2, 3]
    for col in ("epoch", "lr", "train_loss", "val_acc", "val_many", "val_medium", "val_few",
                "test_acc", "test_many", "test_medium", "test_few", "epoch_time_s",
                "class_acc_meta", "difficulty", "class_weight"):
        assert col in table[0], col
    saved = json.loads((out / "final.json").read_text())
    best = max(table, key=lambda r: r["val_acc"])
    assert saved["selected_epoch"] == best["epoch"] == final["selected_epoch"]
    assert saved["val_acc"] == pytest.approx(best["val_acc"])
    assert "model" in load_checkpoint(str(out / "checkpoint.pt"))
    # rerunning the written config reproduces the run
    again = train_to_dir(written, tmp_path / "again")
    assert again["val_acc"] == final["val_acc"]


def test_selection_uses_validation_never_test(tmp_path):
    trainer = Trainer(digits("ce", 4))
    history = list(trainer.fit())
    assert trainer.best == max(history, key=lambda m: m["val_acc"])
    assert trainer.best is not None
    sizes = {name: len(getattr(trainer.ds, name)) for name in ("meta", "val", "test")}
    assert all(v > 0 for v in sizes.values())


def test_without_a_validation_split_the_last_epoch_is_reported_not_selected(tmp_path):
    """The authors' `paper` profile has no V; selecting on test would leak, so nothing is."""
    cfg = digits("ce", 3, **{"data.val_per_class": 0})
    final = train_to_dir(cfg, tmp_path / "run")
    assert final["selected_by"] == "last_epoch" and final["selected_epoch"] == 3
    rows = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pylist()
    assert all(r["val_acc"] != r["val_acc"] for r in rows)  # NaN: there is no V
    assert final["test_acc"] == rows[-1]["test_acc"]


def test_search_refuses_a_config_without_validation_split(cli, one_line_error, tmp_path):
    code, _, err = cli("search", "--smoke", "--set", "data.val_per_class=0",
                       "--storage", tmp_path / "r")
    one_line_error(code, err, "data.val_per_class", "validation split")
    assert not (tmp_path / "r").exists()
