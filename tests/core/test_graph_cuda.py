"""Graphed == eager on a GPU (`train.cuda_graph: true`). Skipped without CUDA (CI has none).

Until this has passed on a GPU, `graph_step.GRAPH_VERIFIED_ON_GPU` stays False and `auto` runs
eagerly. Run it on a lent GPU: `pytest -q tests/core/test_graph_cuda.py`.

Tolerance: the graph replays the kernels of one eager call of the same capturable step, but the
eager run it is compared with is today's step (torch's SGD/Adam: float64 bias corrections, fused
lr), and cudnn may choose other convolution algorithms for the captured iteration than for the
eager one (the capture's workspace, the warm-up on a side stream), which changes float32
summation order. With TF32 off both are float32 computations whose differences start at ~1e-7
and grow with training: over three epochs on digits the per-epoch train loss is asked to agree to
1e-3 relative, accuracies to 3 images in 100, and every parameter to 2% of how far it moved
(a graph that replays stale inputs, skips the meta step or the lr change is off by far more).
"""

import pytest
import torch

from dnet_tune.run import resolve_config
from dnet_tune.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def run(method: str, graph: bool, **sets: object) -> Trainer:
    items = [f"{k}={v}" for k, v in {**sets, "train.device": "cuda",
                                      "train.cuda_graph": graph}.items()]
    trainer = Trainer(resolve_config(dataset="digits_lt", sets=items, overrides={
        "method": {"name": method}, "train": {"epochs": 3}}))
    trainer.start = {k: v.clone() for k, v in params(trainer).items()}  # type: ignore[attr-defined]
    trainer.rows = list(trainer.fit())  # type: ignore[attr-defined]
    return trainer


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {k: v.detach() for k, v in trainer.model.named_parameters()}
    dn = getattr(trainer.method, "dn", None)
    if dn is not None:
        out.update({f"dn.{k}": v.detach() for k, v in dn.named_parameters()})
    return out


@pytest.mark.parametrize(("method", "sets"), [
    ("difficulty_net", {"dn.lr": 0.01}),
    ("difficulty_net", {"dn.lr": 0.01, "method.meta_interval": 2}),
    ("ce", {}),
])
def test_graphed_run_equals_eager_run(no_tf32, method, sets):
    eager, graphed = run(method, False, **sets), run(method, True, **sets)
    assert graphed.cfg.train.cuda_graph is True and graphed.graph is not None
    assert graphed.graph.counts.replays > 0
    if sets.get("method.meta_interval") == 2:
        assert set(graphed.graph.graphs) == {True, False}
    for a, b in zip(eager.rows, graphed.rows, strict=True):  # type: ignore[attr-defined]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert abs(b["val_acc"] - a["val_acc"]) <= 0.03
        assert abs(b["test_acc"] - a["test_acc"]) <= 0.03
    p, q = params(eager), params(graphed)
    for k in p:
        travel = float((p[k] - eager.start[k]).abs().max())  # type: ignore[attr-defined]
        assert float((q[k] - p[k]).abs().max()) <= 0.02 * travel + 1e-6, k
