"""Methods: how one training iteration turns a mini-batch into a classifier update.

Difficulty-Net and every baseline share this interface so the train loop, the metrics and the
search treat them alike (a baseline tuned with the same budget is a fair comparison).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from dnet_tune.config import Config
from dnet_tune.device import autocast
from dnet_tune.distributed.meta_step import DistributedSteps
from dnet_tune.errors import UserError
from dnet_tune.method import DIFFICULTY_NET, losses
from dnet_tune.method.capturable import OptimizerStep, plain_step
from dnet_tune.method.difficulty_net import (
    DifficultyNet,
    class_weights,
    driver_loss,
    driver_target,
)
from dnet_tune.method.meta_step import meta_grad_jvp, meta_loss_reference
from dnet_tune.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]


class Method:
    """Base: plain weighted loss; subclasses choose the per-sample loss and the class weights."""

    uses_class_acc = False  # True: the loop measures `a` on the meta set H and calls set_class_acc
    # several processes train the run: the steps over the global batch (None: one process)
    dist: DistributedSteps | None = None

    def __init__(self, cfg: Config, train_counts: list[int], device: torch.device) -> None:
        self.cfg = cfg
        self.num_classes = len(train_counts)
        self.device = device
        prior = torch.tensor(train_counts, dtype=torch.float32).clamp(min=1)
        self.log_prior = (prior / prior.sum()).log().to(device)
        self.class_acc = torch.zeros(self.num_classes, device=device)
        # how an optimiser steps: `optimizer.step()`; a graphed run swaps in a capturable step
        self.optimizer_step: OptimizerStep = plain_step

    # -- the per-sample loss ℓ and the class weights w
    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return losses.cross_entropy(logits, y)

    def weights(self) -> torch.Tensor | None:
        return None

    def set_class_acc(self, a: torch.Tensor) -> None:
        self.class_acc = a.to(self.device, torch.float32)

    def forward_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample losses of the real forward, under the run's precision; the loss in fp32."""
        with autocast(self.device, self.cfg.train.precision):
            logits = model(x)
        if logits.dtype in (torch.bfloat16, torch.float16):
            logits = logits.float()
        return self.per_sample_loss(logits, y)

    def train_step(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        lr: float | torch.Tensor,
        meta_batches: Iterator[Batch] | None,
    ) -> torch.Tensor:
        """One update of θ; returns the detached loss *on the device*.

        No `float()` here: a host read would wait for the GPU every iteration. The trainer
        accumulates these and checks finiteness every few dozen steps.
        """
        return self.real_step(model, self.forward_loss(model, x, y), y, optimizer)

    def real_step(
        self,
        model: nn.Module,
        per_sample: torch.Tensor,
        y: torch.Tensor,
        optimizer: torch.optim.Optimizer,
    ) -> torch.Tensor:
        if self.dist is not None:
            return self.dist.real_step(model, per_sample, y, self.weights(), optimizer)
        loss = losses.weighted_mean(per_sample, y, self.weights())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_step(optimizer)
        return loss.detach()

    def epoch_info(self) -> dict[str, list[float]]:
        """Per-class vectors recorded in the metrics (list columns), asked for after the
        epoch's last step and before an after-epoch refresh of `a`."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"class_acc": self.class_acc.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_class_acc(state["class_acc"])


# Each method declares its colour too: the same in every figure of every report (a reader learns
# them once), and a method added here cannot be forgotten there.
METHODS: Registry[Any] = Registry("method")


@METHODS.register("ce", description="plain cross-entropy", colour="#7f7f7f")
class CrossEntropy(Method):
    pass


@METHODS.register("balanced_softmax", description="Balanced Softmax (logits + log prior)",
                  colour="#ff7f0e")
class BalancedSoftmax(Method):
    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return losses.balanced_softmax(logits, y, self.log_prior)


@METHODS.register("focal", description="focal loss, gamma = method.focal_gamma",
                  colour="#8c564b")
class Focal(Method):
    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return losses.focal(logits, y, self.cfg.method.focal_gamma)


@METHODS.register("class_balanced", description="CE weighted by inverse effective number",
                  colour="#9467bd")
class ClassBalanced(Method):
    def __init__(self, cfg: Config, train_counts: list[int], device: torch.device) -> None:
        super().__init__(cfg, train_counts, device)
        self._w = losses.class_balanced_weights(train_counts, cfg.method.cb_beta).to(device)

    def weights(self) -> torch.Tensor:
        return self._w

    def epoch_info(self) -> dict[str, list[float]]:
        return {"class_weight": self._w.tolist()}


@METHODS.register("cdb_ce", description="CDB: CE weighted by (1 - a_c)^tau", colour="#2ca02c")
class CDBCrossEntropy(Method):
    uses_class_acc = True

    def weights(self) -> torch.Tensor:
        return losses.cdb_weights(self.class_acc, self.cfg.method.cdb_tau)

    def epoch_info(self) -> dict[str, list[float]]:
        return {"class_acc_meta": self.class_acc.tolist(), "class_weight": self.weights().tolist()}


@METHODS.register(DIFFICULTY_NET, description="Difficulty-Net (meta-learned class weights)",
                  colour="#1f77b4")
class DifficultyNetMethod(Method):
    """Spec §4: driver loss, virtual step, meta step on φ (Adam), then the real step on θ.

    Precision: with `train.precision: bf16` only the real step's forward is autocast; the meta
    step always runs in fp32. Measured on CPU (`bench/meta_grad_bf16.py`: φ-gradient of the JVP
    path with the classifier's forwards under bf16 autocast vs fp32, bar: cosine > 0.99 and
    relative error < 5%): fine at 10 classes (ResNet-32, batch 128: cosine ≥ 0.9997, relative
    error ≤ 3.0%) but not at 100 (ResNet-32, batch 128: cosine 0.942-0.969, relative error
    25-36%; ResNet-20, batch 64: 6-8%): the per-class signals ⟨g, ∇S_c⟩ shrink with C while
    bf16's rounding does not. So bf16 runs cannot share the real forward with the meta
    step and pay one extra forward per meta step.
    """

    uses_class_acc = True

    def __init__(self, cfg: Config, train_counts: list[int], device: torch.device) -> None:
        super().__init__(cfg, train_counts, device)
        dn = cfg.dn
        self.dn = DifficultyNet(
            self.num_classes, dn.hidden, bias=dn.bias, input_mode=dn.input_mode
        ).to(device)
        self.dn_opt = torch.optim.Adam(self.dn.parameters(), lr=dn.lr, weight_decay=dn.weight_decay)
        self.iteration = 0

    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.cfg.method.base_loss == "balanced_softmax":
            return losses.balanced_softmax(logits, y, self.log_prior)
        return losses.cross_entropy(logits, y)

    def weights(self) -> torch.Tensor:
        with torch.no_grad():
            return class_weights(self.dn(self.class_acc))

    def meta_objective(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        lr: float | torch.Tensor,
        meta_batch: Batch | None,
        per_sample: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_DN(φ) = CE(f_θ'(φ)(x_m), y_m) + λ·L_drv(φ); the CE term only in `full` mode.

        With `meta_impl: jvp` the CE term is a surrogate with the value of CE_meta and the
        gradient (∂CE_meta/∂w)·(∂w/∂φ), so the objective reads and differentiates like the
        reference's. `per_sample`: see `meta_grad_jvp` (ignored by the reference).
        """
        m = self.cfg.method
        a = self.class_acc
        d = self.dn(a)
        l_drv = driver_loss(d, driver_target(a, m.driver_target))
        objective = m.lam * l_drv
        info = {"driver_loss": l_drv.detach()}  # tensors: a float() would sync the device
        if m.meta_grad == "full":
            assert meta_batch is not None, "full meta-gradient needs meta batches"
            x_m, y_m = meta_batch
            w = class_weights(d)
            if m.meta_impl == "reference":
                meta_ce = meta_loss_reference(model, x, y, w, lr, x_m, y_m, self.per_sample_loss)
            else:
                jvp = meta_grad_jvp if self.dist is None else self.dist.meta_grad_jvp
                dce_dw, ce = jvp(model, x, y, w, lr, x_m, y_m, self.per_sample_loss, per_sample)
                meta_ce = ce + (dce_dw * (w - w.detach())).sum()
            objective = objective + meta_ce
            info["meta_loss"] = meta_ce.detach()
        return objective, info

    def train_step(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        lr: float | torch.Tensor,
        meta_batches: Iterator[Batch] | None,
    ) -> torch.Tensor:
        m = self.cfg.method
        meta_now = self.iteration % m.meta_interval == 0
        self.iteration += 1
        if not meta_now:
            return super().train_step(model, x, y, optimizer, lr, None)
        full = m.meta_grad == "full"
        meta_batch = next(meta_batches) if full and meta_batches is not None else None
        # The JVP path needs a forward of θ on x with a graph, and so does the real step: θ is the
        # same in both, so one forward serves both (the meta step only retains its graph).
        # It is also the real forward for BN: it updates the running statistics exactly once.
        shared = full and m.meta_impl == "jvp" and self.cfg.train.precision == "fp32"
        per_sample = self.forward_loss(model, x, y) if shared else None
        objective, _ = self.meta_objective(model, x, y, lr, meta_batch, per_sample)
        self.dn_opt.zero_grad(set_to_none=True)
        if objective.requires_grad:
            objective.backward()
            self.optimizer_step(self.dn_opt)
        # The meta step's θ-gradients went through autograd.grad (nothing accumulated in .grad);
        # the real step's w comes from the updated φ, without gradient into φ.
        if per_sample is None:
            per_sample = self.forward_loss(model, x, y)
        return self.real_step(model, per_sample, y, optimizer)

    def epoch_info(self) -> dict[str, list[float]]:
        with torch.no_grad():
            d = self.dn(self.class_acc)
        return {
            "class_acc_meta": self.class_acc.tolist(),
            "difficulty": d.tolist(),
            "class_weight": class_weights(d).tolist(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "dn": self.dn.state_dict(),
            "dn_opt": self.dn_opt.state_dict(),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.dn.load_state_dict(state["dn"])
        self.dn_opt.load_state_dict(state["dn_opt"])
        self.iteration = int(state["iteration"])


def check_method_config(cfg: Config) -> None:
    """What a method needs from the rest of the config, asked of the method itself."""
    cls = METHODS.get(cfg.method.name)
    if cls.uses_class_acc and cfg.data.meta_per_class == 0:
        raise UserError(f"{cfg.method.name} measures per-class accuracies on the meta set: "
                        f"set data.meta_per_class > 0")


def create_method(cfg: Config, train_counts: list[int], device: torch.device) -> Method:
    check_method_config(cfg)
    cls = METHODS.get(cfg.method.name)
    method: Method = cls(cfg, train_counts, device)
    return method
