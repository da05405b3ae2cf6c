"""`train --workers N`: N gloo processes compute what one process computes.

Tolerance: float64 throughout; the 2-worker run differs from the one-process run only in the
order of floating-point sums (per-rank sums then an all-reduce instead of one mean; two-pass
BatchNorm statistics over ranks). After 12 SGD/Adam iterations (2 epochs of digits_lt: 5 full
batches of 64 and a last batch of 63 split 32/31, meta batches of 100 split 50/50) that rounding
measured 8e-14 (θ) and 5e-14 (φ) in absolute terms for Difficulty-Net with the full JVP
meta-gradient; rtol 1e-9 / atol 1e-10 leaves three orders of room and stays far below what a real
mistake produces: BatchNorm on each shard alone moved θ by 0.29 (`test_without_sync_bn_the_runs_
differ` asks for more than 1e-6), and dropping the all-reduce of the per-class directional
derivatives (checked by hand while writing this) moved φ by 1.6e-2.
"""

from __future__ import annotations

import pytest
import torch
from dist_workers import (
    EPOCHS,
    EQUIVALENT,
    SCENARIOS,
    config,
    equivalence_worker,
    finalization_worker,
    in_float64,
    result,
    resume_worker,
)

from dnet_tune.distributed.launch import spawn
from dnet_tune.errors import UserError
from dnet_tune.train import Trainer, load_checkpoint

RTOL, ATOL = 1e-9, 1e-10


def one_process(name: str, **more: object) -> dict:
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        trainer = in_float64(Trainer(config(name, 1, **more)))
        list(trainer.fit())
        return result(trainer)
    finally:
        torch.set_default_dtype(before)


def assert_close_states(a: dict, b: dict, **tol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    spawn(2, "gloo", equivalence_worker, str(out), list(SCENARIOS))
    return {name: [torch.load(out / f"{name}-rank{r}.pt", weights_only=False) for r in (0, 1)]
            for name in SCENARIOS}


@pytest.mark.parametrize("name", EQUIVALENT)
def test_two_workers_train_what_one_process_trains(two_workers, name):
    rank0, rank1 = two_workers[name]
    # θ and φ identical on every rank (the all-reduced values are the same bits everywhere)
    assert_close_states(rank0["model"], rank1["model"], rtol=0, atol=0)
    assert_close_states(rank0["dn"], rank1["dn"], rtol=0, atol=0)
    single = one_process(name)
    assert rank0["model"]["features.1.running_mean"].dtype == torch.float64
    assert_close_states(rank0["model"], single["model"], rtol=RTOL, atol=ATOL)
    assert_close_states(rank0["dn"], single["dn"], rtol=RTOL, atol=ATOL)
    if name.startswith("dn"):  # φ moved: the comparison is not of two untouched inits
        fresh = in_float64(Trainer(config(name, 1))).method.dn.state_dict()
        assert any((v - fresh[k].double()).abs().max() > 1e-6 for k, v in rank0["dn"].items())
    for got, want in zip(rank0["history"], single["history"], strict=True):
        for key in ("train_loss", "val_acc", "test_acc"):
            assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
        if "class_weight" in want:
            assert got["class_weight"] == pytest.approx(want["class_weight"], rel=1e-9)
    assert len(rank0["history"]) == EPOCHS


def test_without_sync_bn_the_runs_differ(two_workers):
    """The tolerance has teeth: BatchNorm on each rank's shard alone is visibly another run."""
    single = one_process("ce")
    shard_bn = two_workers["ce_shard_bn"][0]
    gap = max(float((shard_bn["model"][k].double() - v.double()).abs().max())
              for k, v in single["model"].items())
    assert gap > 1e-6
    torch.testing.assert_close(two_workers["ce"][0]["model"], single["model"], rtol=RTOL,
                               atol=ATOL)


def test_resume_under_two_workers_is_exact(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    spawn(2, "gloo", resume_worker, str(straight), str(stopped))
    a = load_checkpoint(str(straight / "checkpoint.pt"))
    b = load_checkpoint(str(stopped / "checkpoint.pt"))
    assert a["epoch"] == b["epoch"] == EPOCHS
    assert a["config"]["train"]["workers"] == 2
    assert_close_states(a["model"], b["model"], rtol=0, atol=0)
    assert_close_states(a["method"]["dn"], b["method"]["dn"], rtol=0, atol=0)
    for x, y in zip(a["history"], b["history"], strict=True):
        assert {k: v for k, v in x.items() if k != "epoch_time_s"} == \
            {k: v for k, v in y.items() if k != "epoch_time_s"}


@pytest.mark.parametrize("fail", [False, True], ids=["finished", "user-error"])
def test_a_rank_ends_without_the_interpreter_s_finalization(tmp_path, fail):
    """gloo's worker threads can outlive the group and abort a rank that finalizes after its run
    has finished (SIGABRT, "training worker 1 exited with code -6"; launch.py says how). An exit
    hook stands for finalization: it must not run, and the exit code must still be the rank's."""
    if fail:
        with pytest.raises(UserError, match=r"rank \d found a mistake"):
            spawn(2, "gloo", finalization_worker, str(tmp_path), fail)
    else:
        spawn(2, "gloo", finalization_worker, str(tmp_path), fail)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ran-0", "ran-1"]
    assert not list(tmp_path.glob("finalized-*"))


@pytest.mark.parametrize("argv, needles", [
    (["--workers", "0"], ["--workers", "got 0"]),
    (["--workers", "3"], ["data.batch_size=64", "multiple of 3"]),
    (["--workers", "2", "--set", "data.meta_batch_size=99"], ["data.meta_batch_size=99"]),
    (["--workers", "2", "--set", "method.meta_impl=reference"], ["meta_impl", "jvp"]),
    (["--workers", "2", "--set", "stage2.enabled=true"], ["stage 2", "--workers"]),
    (["--workers", "2", "--device", "cuda:0"], ["cuda:0", "one GPU"]),
    (["--workers", "2", "--set", "train.cuda_graph=on"], ["cuda_graph", "all-reduces"]),
])
def test_workers_bad_input_is_one_line_before_anything_runs(cli, tmp_path, one_line_error,
                                                            argv, needles):
    out = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "digits_lt", "--epochs", "1", "--output", out,
                       *argv)
    one_line_error(code, err, *needles)
    assert not out.exists()


def test_a_rank_s_user_error_comes_back_as_one_line(cli, tmp_path, one_line_error):
    """Found only once the data is built (H of 10 images cannot split across 4 workers): the
    ranks raise it, the launcher relays it, nothing is written."""
    out = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "digits_lt", "--epochs", "1", "--output", out,
                       "--workers", "4", "--set", "data.meta_per_class=1",
                       "--set", "train.threads=1")
    one_line_error(code, err, "meta batch holds 10 images", "4 workers")
    assert not out.exists()


def test_workers_with_resume_is_refused(cli, tmp_path, one_line_error):
    code, _, err = cli("train", "--resume", "--output", tmp_path, "--workers", "2")
    one_line_error(code, err, "--workers", "--resume")


def test_cli_trains_with_workers_records_them_and_resumes_with_them(cli, tmp_path):
    from dnet_tune.config import load_yaml

    out = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "digits_lt", "--epochs", "1", "--workers", "2",
                       "--output", out, "--quiet")
    assert code == 0, err
    recorded = load_yaml(out / "config.yaml")
    assert recorded["train"]["workers"] == 2 and recorded["model"]["sync_bn"] is True
    assert isinstance(recorded["train"]["threads"], int)  # auto resolved per rank, recorded
    code, _, err = cli("train", "--resume", "--output", out, "--extend", "1", "--quiet")
    assert code == 0, err
    state = load_checkpoint(str(out / "checkpoint.pt"))
    assert state["epoch"] == 2 and state["config"]["train"]["workers"] == 2
    assert [row["epoch"] for row in state["history"]] == [1, 2]


def test_a_config_with_workers_never_trains_silently_as_one_process():
    with pytest.raises(UserError, match=r"train\.workers=2 needs that many processes"):
        Trainer(config("ce", 2))
