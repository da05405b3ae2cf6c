"""Stage 2 (spec §6) on digits_lt: frozen backbone, class-aware sampling, label-aware smoothing,
learnable logit scales, one run numbered across both stages, exact resumption."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from stopped_runs import stop_and_resume

from dnet_tune.errors import UserError
from dnet_tune.run import resolve_config, train_to_dir
from dnet_tune.stage2 import (
    Stage2,
    class_smoothing,
    label_aware_smoothing,
    resolve_smoothing,
    smoothing_for_imbalance,
)
from dnet_tune.stage2_sampler import class_balanced_order, epoch_length
from dnet_tune.train import Trainer, load_checkpoint, save_checkpoint

E1, E2 = 2, 2


def two_stage(method: str = "ce", e1: int = E1, e2: int = E2, **sets: object):
    items = [f"{k}={v}" for k, v in {"stage2.enabled": "true", "stage2.epochs": e2,
                                     **sets}.items()]
    return resolve_config(dataset="digits_lt", sets=items,
                          overrides={"method": {"name": method}, "train": {"epochs": e1}})


def _strip_time(rows):
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]


# ------------------------------------------------------------------ label-aware smoothing


@pytest.mark.parametrize(("imbalance", "expected"), [
    (200, (0.4, 0.0)), (101, (0.4, 0.0)), (100, (0.4, 0.1)), (51, (0.4, 0.1)),
    (50, (0.3, 0.0)), (21, (0.3, 0.0)), (20, (0.2, 0.0)), (10, (0.2, 0.0)), (1, (0.2, 0.0)),
])
def test_smoothing_table_with_the_authors_boundaries(imbalance, expected):
    assert smoothing_for_imbalance(imbalance) == expected


def test_class_smoothing_hand_computed():
    # r = (n - 2) / (10 - 2) = 1, 0.5, 0 for counts 10, 6, 2
    concave = class_smoothing([10, 6, 2], 0.4, 0.1, "concave")
    # 0.1 + 0.3 * sin(pi/4) = 0.1 + 0.3 * 0.7071068 = 0.3121320
    torch.testing.assert_close(concave, torch.tensor([0.4, 0.3121320, 0.1]))
    linear = class_smoothing([10, 6, 2], 0.4, 0.1, "linear")
    torch.testing.assert_close(linear, torch.tensor([0.4, 0.25, 0.1]))
    torch.testing.assert_close(class_smoothing([7, 7], 0.3, 0.0, "concave"),
                               torch.tensor([0.3, 0.3]))  # no tail: the head value


def test_each_class_gets_the_table_value_and_the_concave_rule():
    """digits at IF 60: the table gives 0.4 / 0.1; counts 114, 72, 45, ..., 1."""
    trainer = Trainer(two_stage(e1=1, e2=1, **{"data.imbalance": 60}))
    list(trainer.fit())
    assert trainer.ds.train_counts() == [114, 72, 45, 29, 18, 11, 7, 4, 2, 1]
    eps = trainer.stage2.smoothing
    assert eps[0].item() == pytest.approx(0.4)  # most images: ε_head
    assert eps[9].item() == pytest.approx(0.1)  # fewest: ε_tail
    # class 2, 45 images: r = 44/113 = 0.389381, sin(pi/2 * r) = 0.574209 → 0.1 + 0.3 * 0.574209
    assert eps[2].item() == pytest.approx(0.272263, abs=1e-6)
    # class 5, 11 images: r = 10/113, sin(0.139007) = 0.138560 → 0.141568
    assert eps[5].item() == pytest.approx(0.141568, abs=1e-6)


def test_explicit_smoothing_overrides_the_table_per_end():
    cfg = two_stage(**{"data.imbalance": 60, "stage2.smoothing_head": 0.25})
    assert resolve_smoothing(cfg) == (0.25, 0.1)


def test_label_aware_smoothing_equals_cross_entropy_with_smoothed_targets():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=g)
    y = torch.randint(0, 5, (16,), generator=g)
    eps = torch.tensor([0.4, 0.3, 0.2, 0.1, 0.0])
    target = (1 - eps[y])[:, None] * F.one_hot(y, 5) + (eps[y] / 5)[:, None]
    reference = -(target * F.log_softmax(logits, dim=1)).sum(dim=1)
    torch.testing.assert_close(label_aware_smoothing(logits, y, eps), reference)


# ------------------------------------------------------------------ class-balanced sampling


def test_class_aware_sampler_has_equal_expected_counts_per_class():
    counts = [500, 120, 30, 7, 1]
    labels = np.repeat(np.arange(5), counts)
    rng = np.random.default_rng(3)
    labels = labels[rng.permutation(len(labels))]
    total = epoch_length(labels, 5)
    assert total == 500 * 5
    g = torch.Generator().manual_seed(0)
    drawn = torch.cat([class_balanced_order(labels, 5, 4, total, g) for _ in range(100)])
    assert len(drawn) == 100 * total
    per_class = np.bincount(labels[drawn.numpy()], minlength=5) / len(drawn)
    np.testing.assert_allclose(per_class, 0.2, atol=0.002)
    # within a class, every image is drawn about equally often (cycles, not replacement)
    per_image = np.bincount(drawn.numpy(), minlength=len(labels))
    for c in range(5):
        members = per_image[labels == c]
        assert members.max() - members.min() <= 0.05 * members.mean() + 8, c


def test_stage2_batches_are_class_balanced_in_a_real_run(monkeypatch):
    seen = torch.zeros(10, dtype=torch.int64)
    step = Stage2._step

    def spy(self, x, y):
        seen.add_(torch.bincount(y.cpu(), minlength=10))
        return step(self, x, y)

    monkeypatch.setattr(Stage2, "_step", spy)
    list(Trainer(two_stage(e1=1, e2=1)).fit())
    assert int(seen.sum()) == 114 * 10  # n_max · C per epoch, like the authors' sampler
    assert int(seen.max() - seen.min()) <= 4  # at most one visit of 4 apart
    assert int(seen.min()) > 0


# ------------------------------------------------------------------ the run


@pytest.fixture(scope="module")
def run_two_stage():
    trainer = Trainer(two_stage("ce", e1=3, e2=3))
    snapshots = []
    history = []
    for m in trainer.fit():
        history.append(m)
        if m["epoch"] == 3:
            snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
            snapshots.append({k: v.clone() for k, v in trainer.model.classifier.state_dict()
                              .items()})
    return trainer, history, snapshots


def test_stage2_leaves_the_backbone_bit_identical(run_two_stage):
    trainer, history, (after_stage1, _) = run_two_stage
    assert [m["stage"] for m in history] == [1, 1, 1, 2, 2, 2]
    final = trainer.model.state_dict()
    assert final.keys() == after_stage1.keys()
    for k, v in final.items():  # weights and BN running statistics alike
        assert torch.equal(v, after_stage1[k]), k
    assert any(k.endswith("running_mean") for k in final)


def test_lws_scales_are_learned_and_only_they_without_retrain_head(run_two_stage):
    trainer, history, (_, stage1_head) = run_two_stage
    scales = trainer.stage2.head.scales.detach()
    assert not torch.equal(scales, torch.ones(10))
    assert float((scales - 1).abs().max()) > 1e-3
    assert history[-1]["lws_scale"] == pytest.approx(scales.tolist())
    for k, v in trainer.stage2.head.classifier.state_dict().items():
        assert torch.equal(v, stage1_head[k]), k  # retrain_head false: the head is stage 1's


def test_retrain_head_trains_the_copied_head_too():
    trainer = Trainer(two_stage(e1=1, e2=1, **{"stage2.retrain_head": "true"}))
    trainer.run_epoch()
    before = trainer.model.classifier.weight.detach().clone()
    trainer.run_epoch()
    assert not torch.equal(trainer.stage2.head.classifier.weight, before)
    assert torch.equal(trainer.model.classifier.weight, before)  # the model's own is frozen


def test_init_best_val_starts_stage2_from_the_selected_stage1_weights():
    trainer = Trainer(two_stage(e1=2, e2=1, **{"stage2.init": "best_val"}))
    trainer.run_epoch()
    selected = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run_epoch()
    last = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.best_model = selected  # as if epoch 1 had been the best on V
    trainer.run_epoch()
    assert not all(torch.equal(v, selected[k]) for k, v in last.items())
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, selected[k]), k


def test_selection_spans_both_stages(run_two_stage):
    trainer, history, _ = run_two_stage
    assert trainer.best == max(history, key=lambda m: m["val_acc"])
    # on this run stage 2 lifts val above every stage-1 epoch: the selected epoch is stage 2's
    assert trainer.best["stage"] == 2 and trainer.best["epoch"] > 3
    assert trainer.best_head is not None


def test_epochs_are_numbered_across_both_stages_in_the_run_directory(tmp_path):
    final = train_to_dir(two_stage(), tmp_path / "run")
    rows = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pylist()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["stage"] for r in rows] == [1, 1, 2, 2]
    assert rows[0]["lws_scale"] is None and len(rows[2]["lws_scale"]) == 10
    # stage 2's cosine restarts at stage2.lr: epochs 3, 4 are its epochs 0, 1 of 2
    assert rows[2]["lr"] == pytest.approx(0.05)
    assert rows[3]["lr"] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert final["last_epoch"] == 4
    assert final["selected_epoch"] == max(rows, key=lambda r: r["val_acc"])["epoch"]
    state = load_checkpoint(str(tmp_path / "run" / "checkpoint.pt"))
    assert state["stage2"]["stage"] == 2 and "scales" in state["stage2"]["head"]


@pytest.mark.parametrize("stop_at", [E1, E1 + 1])  # at the boundary and inside stage 2
def test_resume_in_stage2_reproduces_the_run_exactly(tmp_path, stop_at):
    cfg = two_stage("difficulty_net", e1=E1, e2=3, **{"data.augment": "crop_flip"})
    full = Trainer(cfg)
    uninterrupted = list(full.fit())

    resumed = stop_and_resume(cfg, stop_at, tmp_path / "ckpt.pt")
    rest = list(resumed.fit())
    assert [m["epoch"] for m in rest] == list(range(stop_at + 1, E1 + 4))
    assert _strip_time(resumed.history) == _strip_time(uninterrupted)
    for a, b in ((resumed.stage2.head, full.stage2.head), (resumed.model, full.model)):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(),
                                      strict=True):
            assert ka == kb and torch.equal(va, vb), ka


def test_resume_refuses_a_checkpoint_that_disagrees_on_the_stages(tmp_path):
    trainer = Trainer(two_stage(e1=1, e2=2))
    trainer.run_epoch()
    trainer.run_epoch()
    save_checkpoint(trainer, str(tmp_path / "ckpt.pt"))
    other = Trainer(two_stage(e1=2, e2=2))  # stage 1 would still run at epoch 2
    with pytest.raises(UserError, match="stage 2"):
        other.load_state_dict(load_checkpoint(str(tmp_path / "ckpt.pt")))


def test_cli_resume_cannot_move_the_stage_boundary_once_in_stage2(cli, tmp_path, one_line_error):
    out = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "digits_lt", "--method", "ce", "--epochs", 1,
                       "--set", "stage2.enabled=true", "--set", "stage2.epochs=1",
                       "--output", out, "--quiet")
    assert code == 0, err
    code, _, err = cli("train", "--output", out, "--resume", "--extend", 2)
    one_line_error(code, err, "stage 2", "--extend")


@pytest.mark.parametrize(("item", "key"), [
    ("stage2.lrr=0.1", "stage2.lrr"), ("stage2.enabled=maybe", "stage2.enabled"),
    ("stage2.smoothing_head=1.5", "stage2.smoothing_head"), ("stage2.epochs=0", "stage2.epochs"),
    ("stage2.smoothing_shape=cubic", "stage2.smoothing_shape"),
])
def test_bad_stage2_keys_are_named(item, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        resolve_config(dataset="digits_lt", sets=[item])
