"""The capturable iteration (`dnet_tune/graph_step.py`) computes today's step, checked on CPU.

A CUDA graph replays exactly the kernels of one eager call of the capturable formulation, so the
function a graph holds is the one `GraphedIteration(capture=False)` runs here: tensor lr, static
`a`, the optimisers of `method/capturable.py`. It is compared with the plain eager step over two
epochs (an epoch boundary refreshes `a`).

Tolerance: the two differ only in float32 rounding (Adam's bias corrections in float32 instead of
float64, lr applied by a multiply instead of a fused alpha), ~1e-7 relative per step; epoch 1's
losses agree bitwise here. Adam's update lr·m/√v is a ratio near ±1 that passes a gradient's
relative rounding on undamped, and Difficulty-Net's meta-gradients are small differences, so φ
ends ~1e-4 of its travel apart after ~50 steps (classifier ~1e-6). The bar is therefore every
parameter within 0.2% of how far training moved it: a wrong rule (no momentum, no weight decay,
no bias correction, a skipped or extra meta step, last epoch's lr) is off by a whole step, a few
percent of the travel, after one step.
"""

import logging

import pytest
import torch

from dnet_tune.graph_step import GRAPH_VERIFIED_ON_GPU, GraphedIteration, plan_graph
from dnet_tune.method.capturable import adam_step, sgd_step
from dnet_tune.run import resolve_config
from dnet_tune.train import Trainer

RTOL = 1e-4  # per-epoch train loss
TRAVEL = 2e-3  # parameters: this fraction of how far training moved them


def digits(method: str, **sets: object):
    items = [f"{k}={v}" for k, v in sets.items()]
    return resolve_config(dataset="digits_lt", sets=items,
                          overrides={"method": {"name": method}, "train": {"epochs": 2}})


def eager_and_capturable(cfg):
    plain = Trainer(cfg)
    capt = Trainer(cfg)
    capt.graph = GraphedIteration(capt.cfg, capt.method, capt.model, capt.optimizer,
                                  capt.device, capture=False)
    return plain, capt


def params(trainer):
    out = dict(trainer.model.named_parameters())
    dn = getattr(trainer.method, "dn", None)
    if dn is not None:
        out.update({f"dn.{k}": v for k, v in dn.named_parameters()})
    return out


@pytest.mark.parametrize(("method", "sets"), [
    ("difficulty_net", {"method.meta_impl": "jvp", "dn.lr": 0.01}),
    ("difficulty_net", {"method.meta_impl": "reference", "dn.lr": 0.01}),
    ("difficulty_net", {"method.meta_impl": "jvp", "method.meta_interval": 2, "dn.lr": 0.01}),
    ("difficulty_net", {"method.meta_impl": "reference", "method.meta_interval": 2,
                        "dn.lr": 0.01}),
    ("cdb_ce", {"optim.nesterov": True}),
    ("ce", {}),
])
def test_the_capturable_iteration_trains_as_the_plain_step(method, sets):
    plain, capt = eager_and_capturable(digits(method, **sets))
    rows = [(a, b) for a, b in zip(plain.fit(), capt.fit(), strict=True)]
    assert len(rows) == 2
    for a, b in rows:
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=RTOL)
    p, q = params(plain), params(capt)
    start = {k: v.detach() for k, v in params(Trainer(digits(method, **sets))).items()}
    for k in p:
        travel = float((p[k] - start[k]).abs().max())
        assert travel > 1e-3, k  # training moved it: the comparison below can fail
        assert float((q[k] - p[k]).abs().max()) <= TRAVEL * travel, k
    assert capt.graph.counts.eager > 0 and capt.graph.counts.replays == 0
    if method == "difficulty_net":
        assert capt.method.iteration == plain.method.iteration
        sp, sq = plain.method.dn_opt.state, capt.method.dn_opt.state
        for pa, pb in zip(plain.method.dn.parameters(), capt.method.dn.parameters(), strict=True):
            assert float(sq[pb]["step"]) == float(sp[pa]["step"]) > 0
            torch.testing.assert_close(sq[pb]["exp_avg"], sp[pa]["exp_avg"],
                                       rtol=1e-2, atol=1e-2 * float(sp[pa]["exp_avg"].abs().max()))


@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_capturable_optimisers_follow_torch_step_by_step(wd):
    torch.manual_seed(0)
    for nesterov, momentum in [(False, 0.0), (False, 0.9), (True, 0.9)]:
        a = torch.randn(5, 3, requires_grad=True)
        b = a.detach().clone().requires_grad_()
        ref = torch.optim.SGD([a], lr=0.1, momentum=momentum, weight_decay=wd,
                              nesterov=nesterov)
        new = torch.optim.SGD([b], lr=999.0, momentum=momentum, weight_decay=wd,
                              nesterov=nesterov)  # the tensor lr wins, the group's is unused
        for _ in range(4):
            g = torch.randn(5, 3)
            a.grad, b.grad = g.clone(), g.clone()
            ref.step()
            sgd_step(new, torch.tensor(0.1))
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    a = torch.randn(7, requires_grad=True)
    b = a.detach().clone().requires_grad_()
    ref_adam = torch.optim.Adam([a], lr=1e-2, weight_decay=wd)
    new_adam = torch.optim.Adam([b], lr=1e-2, weight_decay=wd)
    for _ in range(6):
        g = torch.randn(7)
        a.grad, b.grad = g.clone(), g.clone()
        ref_adam.step()
        adam_step(new_adam)
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    # an eager run resumed from the capturable steps' state continues the same moments
    ref_adam.load_state_dict(new_adam.state_dict())
    assert float(ref_adam.state[a]["step"]) == 6


def test_auto_stays_eager_until_verified_and_says_why_once(caplog):
    assert GRAPH_VERIFIED_ON_GPU is False  # flip only with a GPU run recorded in benchmarks.md
    with caplog.at_level(logging.INFO, logger="dnet_tune"):
        trainer = Trainer(digits("difficulty_net"))
        list(trainer.fit())
    lines = [r.getMessage() for r in caplog.records if "cuda_graph" in r.getMessage()]
    assert lines == ["train.cuda_graph auto runs eagerly: not CUDA (train.device resolved to cpu)"]
    assert trainer.graph is None
    assert trainer.cfg.train.cuda_graph is False  # recorded as it ran
    cuda = torch.device("cuda")
    plan = plan_graph(trainer.cfg, cuda, trainer.method, trainer.optimizer)
    assert (plan.capture, plan.reason) == (False, "")  # off: nothing to say
    auto = digits("difficulty_net")
    assert plan_graph(auto, cuda, trainer.method, trainer.optimizer).reason == \
        "not yet verified on a GPU"
    bf16 = digits("difficulty_net", **{"train.precision": "bf16"})
    assert "bf16" in plan_graph(bf16, cuda, trainer.method, trainer.optimizer).reason
    dynamic = digits("cdb_ce", **{"method.cdb_tau": "dynamic"})
    assert "dynamic tau" in plan_graph(dynamic, cuda, trainer.method, trainer.optimizer).reason
    ranks = digits("difficulty_net", **{"train.workers": 2})
    assert "--workers" in plan_graph(ranks, cuda, trainer.method, trainer.optimizer).reason


def test_on_refuses_a_run_it_cannot_capture_in_one_line(cli, tmp_path, one_line_error):
    code, _, err = cli("train", "--dataset", "digits_lt", "--smoke", "--device", "cpu",
                       "--set", "train.cuda_graph=on", "--output", str(tmp_path / "r"))
    one_line_error(code, err, "train.cuda_graph is on", "not CUDA")
    assert not (tmp_path / "r").exists()


class _Echo(torch.nn.Module):
    """Predicts the class written in each image's first pixel."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x.flatten(1)[:, 0].long(), 10).float()


class _Fixed:
    def __init__(self, batches):
        self.batches = batches

    def epoch(self, gen):
        return iter(self.batches)


def test_class_accuracy_counts_a_tiny_split_by_hand():
    """Two batches (counts accumulate across them); class 3 is absent (0, not NaN)."""
    trainer = Trainer(digits("ce"))
    trainer.model = _Echo()
    pred = [[0, 1, 1, 2], [0, 2, 2, 4]]
    true = [[0, 0, 1, 2], [2, 2, 0, 4]]
    trainer._eval["val"] = _Fixed([
        (torch.tensor(p, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone(),
         torch.tensor(t)) for p, t in zip(pred, true, strict=True)])
    acc = trainer.class_accuracy("val")
    # (batch, position): class 0 at (0,0), (0,1), (1,2), predicted 0, 1, 2 -> 1/3; class 1 at
    # (0,2), predicted 1 -> 1; class 2 at (0,3), (1,0), (1,1), predicted 2, 0, 2 -> 2/3;
    # class 4 at (1,3), predicted 4 -> 1; the others have no image -> 0
    expected = torch.tensor([1 / 3, 1, 2 / 3, 0, 1, 0, 0, 0, 0, 0])
    assert acc.dtype == torch.float32
    assert torch.equal(acc, expected.float())
