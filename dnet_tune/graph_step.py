"""Stage 1's training iteration as CUDA graphs (`train.cuda_graph`), and when a run may use them.

Why: on a GPU one Difficulty-Net iteration of ResNet-32 is hundreds of small kernels, launched
one by one from Python; the measured trial was launch-bound (29% utilisation). A graph replays
the whole iteration (shared forward, JVP meta-gradient, both optimiser steps) as one launch.

What is captured is `Method.train_step` itself, unchanged, with two swaps that make it
capturable: the classifier's lr is a device tensor (the virtual step and SGD read it), and the
optimisers step through `method.capturable` (no host read of lr or Adam's step count). The loader
fills static input buffers before each replay; `a` (`method.class_acc`) is kept in one device
tensor that each epoch's value is copied into. Nothing inside reads the device from the host:
the trainer's finiteness check still reads its device-side loss sum every FINITE_CHECK_EVERY
steps. With `method.meta_interval` k > 1 there are two graphs (with and without the meta step);
a batch of another shape (an epoch's last, smaller batch) or a meta batch of another shape runs
the same capturable step eagerly. Nothing is dropped.

`GraphedIteration(capture=False)` runs exactly that formulation eagerly: the CPU tests compare it
with today's step, so the function being captured is checked without a GPU.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from dnet_tune.config import Config
from dnet_tune.errors import UserError
from dnet_tune.method.capturable import CapturableSteps
from dnet_tune.method.methods import Batch, DifficultyNetMethod, Method

LOG = logging.getLogger("dnet_tune")

GRAPH_VERIFIED_ON_GPU = False
"""Whether a GPU has shown the graphed run equal to the eager one (tests/core/test_graph_cuda.py
on a lent GPU, within its stated tolerance). Until it has, `train.cuda_graph: auto` captures
nothing and says so once; `true` (on) still captures (unverified, for the device checks). Set
it to True in the same commit that records that GPU run's result in docs/benchmarks.md."""

# Eager capturable iterations of each kind (with / without the meta step) before its capture:
# they run on a side stream, as torch requires, so lazy initialisation (optimiser state, cudnn's
# algorithm search, forward-mode AD's first use) happens outside the graph. They are real steps.
WARMUP_STEPS = 3


@dataclass(frozen=True)
class GraphPlan:
    capture: bool
    reason: str = ""  # why the run is eager (empty when captured, or when cuda_graph is off)


def graph_blockers(cfg: Config, device: torch.device, method: Method,
                   optimizer: torch.optim.Optimizer) -> list[str]:
    """What keeps this run's stage-1 iteration out of a graph, each in a few words."""
    out = []
    if device.type != "cuda":
        out.append(f"not CUDA (train.device resolved to {device.type})")
    if cfg.train.precision == "bf16":
        out.append("bf16 autocast caches its weight casts across a capture")
    if not isinstance(optimizer, torch.optim.SGD):
        out.append(f"the classifier's optimiser is {type(optimizer).__name__}, not SGD")
    if cfg.method.name == "cdb_ce" and cfg.method.cdb_tau == "dynamic":
        out.append("cdb_ce's dynamic tau reads `a` on the host each step")
    if cfg.train.workers > 1:
        out.append("with --workers the step all-reduces across ranks, which the graph "
                   "does not hold")
    dn_opt = getattr(method, "dn_opt", None)
    if dn_opt is not None and (not isinstance(dn_opt, torch.optim.Adam)
                               or any(g.get("amsgrad") for g in dn_opt.param_groups)):
        out.append("Difficulty-Net's optimiser is not plain Adam")
    return out


def plan_graph(cfg: Config, device: torch.device, method: Method,
               optimizer: torch.optim.Optimizer) -> GraphPlan:
    mode = cfg.train.cuda_graph
    if mode is False:
        return GraphPlan(False)
    blockers = graph_blockers(cfg, device, method, optimizer)
    if mode is True:
        if blockers:
            raise UserError(f"train.cuda_graph is on but this run cannot be captured: "
                            f"{'; '.join(blockers)}; set train.cuda_graph to auto or off")
        return GraphPlan(True)
    if blockers:
        return GraphPlan(False, "; ".join(blockers))
    if not GRAPH_VERIFIED_ON_GPU:
        return GraphPlan(False, "not yet verified on a GPU")
    return GraphPlan(True)


def resolve_graph(cfg: Config, device: torch.device, method: Method,
                  optimizer: torch.optim.Optimizer, model: nn.Module
                  ) -> tuple[Config, GraphedIteration | None]:
    """The config with `cuda_graph` as it runs (true/false: what is recorded), and the graphed
    iteration when it is on. An eager `auto` says why once: on a GPU as a note on stderr (the
    run's log: whoever trains there expects graphs), elsewhere as an INFO record of the
    `dnet_tune` logger (a CPU run is never graphed, so its terminal and its one-line errors stay
    as they were)."""
    plan = plan_graph(cfg, device, method, optimizer)
    if plan.reason:
        line = f"train.cuda_graph auto runs eagerly: {plan.reason}"
        if device.type == "cuda":
            print(f"dnet-tune: note: {line}", file=sys.stderr)
        else:
            LOG.info(line)
    if plan.capture and cfg.stage2.enabled:
        print("dnet-tune: note: stage 1 runs as CUDA graphs; stage 2 (class-aware sampler) "
              "runs eagerly", file=sys.stderr)
    resolved = replace(cfg, train=replace(cfg.train, cuda_graph=plan.capture))
    graph = (GraphedIteration(cfg, method, model, optimizer, device, capture=True)
             if plan.capture else None)
    return resolved, graph


@dataclass
class _Captured:
    graph: Any  # torch.cuda.CUDAGraph
    x: torch.Tensor
    y: torch.Tensor
    meta: Batch | None
    loss: torch.Tensor


@dataclass
class _Counts:
    warm: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    replays: int = 0
    eager: int = 0


class GraphedIteration:
    """`Method.train_step`'s stand-in: same signature, replays a graph where it can."""

    def __init__(self, cfg: Config, method: Method, model: nn.Module,
                 optimizer: torch.optim.Optimizer, device: torch.device, capture: bool) -> None:
        self.cfg, self.method, self.model, self.optimizer = cfg, method, model, optimizer
        self.capture = capture
        self.lr = torch.zeros((), dtype=torch.float32, device=device)
        method.optimizer_step = CapturableSteps(self.lr)
        self.class_acc = method.class_acc.clone()
        self.graphs: dict[bool, _Captured] = {}
        self.shape: torch.Size | None = None  # the full batch's shape, the first batch's
        self.counts = _Counts()
        self._side = torch.cuda.Stream(device) if capture else None

    def _with_meta(self) -> bool:
        """Whether the coming iteration takes the meta step (and, in full mode, a meta batch)."""
        m = self.method
        if not isinstance(m, DifficultyNetMethod):
            return False
        return m.iteration % self.cfg.method.meta_interval == 0

    def _needs_meta_batch(self, with_meta: bool) -> bool:
        return with_meta and self.cfg.method.meta_grad == "full"

    def _bind_class_acc(self) -> None:
        """`a` in one tensor the graphs read: set_class_acc replaces the attribute each epoch."""
        if self.method.class_acc is not self.class_acc:
            self.class_acc.copy_(self.method.class_acc)
            self.method.class_acc = self.class_acc

    def _side_stream(self) -> AbstractContextManager[Any]:
        if self._side is None:
            return nullcontext()
        self._side.wait_stream(torch.cuda.current_stream())
        return torch.cuda.stream(self._side)

    def _eager(self, x: torch.Tensor, y: torch.Tensor,
               meta_batches: Iterator[Batch] | None, warm: bool) -> torch.Tensor:
        self.counts.eager += 1
        with self._side_stream() if warm else nullcontext():
            loss = self.method.train_step(self.model, x, y, self.optimizer, self.lr,
                                          meta_batches)
        if warm and self._side is not None:
            torch.cuda.current_stream().wait_stream(self._side)
        return loss

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   optimizer: torch.optim.Optimizer, lr: float,
                   meta_batches: Iterator[Batch] | None) -> torch.Tensor:
        assert model is self.model and optimizer is self.optimizer
        self._bind_class_acc()
        self.lr.fill_(lr)
        if self.shape is None:
            self.shape = x.shape
        kind = self._with_meta()
        meta = next(meta_batches) if (self._needs_meta_batch(kind)
                                      and meta_batches is not None) else None
        again = iter([meta]) if meta is not None else meta_batches
        if not self.capture or x.shape != self.shape:
            return self._eager(x, y, again, warm=False)
        if self.counts.warm[kind] < WARMUP_STEPS:
            self.counts.warm[kind] += 1
            return self._eager(x, y, again, warm=True)
        if kind not in self.graphs:
            self.graphs[kind] = self._record(kind, x, y, meta)
        g = self.graphs[kind]
        if meta is not None and (g.meta is None or meta[0].shape != g.meta[0].shape):
            return self._eager(x, y, again, warm=False)
        g.x.copy_(x)
        g.y.copy_(y)
        if meta is not None and g.meta is not None:
            g.meta[0].copy_(meta[0])
            g.meta[1].copy_(meta[1])
        if isinstance(self.method, DifficultyNetMethod):
            self.method.iteration += 1  # what the replayed train_step does not do on the host
        g.graph.replay()
        self.counts.replays += 1
        return g.loss

    def _record(self, kind: bool, x: torch.Tensor, y: torch.Tensor,
                meta: Batch | None) -> _Captured:
        """Capture one iteration of `kind`; the static buffers start as this batch's copies."""
        sx, sy = x.clone(memory_format=torch.preserve_format), y.clone()
        smeta = (meta[0].clone(memory_format=torch.preserve_format), meta[1].clone()
                 ) if meta is not None else None
        m = self.method
        saved = getattr(m, "iteration", None)
        if isinstance(m, DifficultyNetMethod):  # steer train_step's own meta-step decision
            m.iteration = 0 if kind else 1
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            loss = m.train_step(self.model, sx, sy, self.optimizer, self.lr,
                                iter([smeta]) if smeta is not None else None)
        if isinstance(m, DifficultyNetMethod):
            m.iteration = int(saved) if saved is not None else 0
        return _Captured(graph, sx, sy, smeta, loss)
