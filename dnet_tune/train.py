"""One training run: data, model and method from the registries; yields metrics per epoch.

Callers (the CLI, the Ray Tune trainable) decide what to do with each epoch: print it, report
it, checkpoint it. This module never imports Ray.

Determinism: every random draw of an epoch (shuffling, augmentation, meta batches) comes from
generators seeded by (seed, epoch, stream), so a run resumed at epoch k replays epochs k+1..E
exactly; the global RNG states are saved as well for anything else that draws.

Stage 2 (`stage2.enabled`, spec §6) continues the same run after stage 1's `train.epochs`:
epochs are numbered on to E1 + E2, each is evaluated and selected on V like any other, and its
state (head, logit scales, optimiser) is part of the checkpoint.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from dnet_tune.config import Config, config_to_dict, resolve_threads, total_epochs
from dnet_tune.data.augment_epoch import resolve_span
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.loader import MetaBatches, make_batches
from dnet_tune.data.registry import build_dataset
from dnet_tune.device import apply_determinism, autocast, channels_last, resolve_deterministic
from dnet_tune.errors import DamagedFile, UserError, describe
from dnet_tune.fileio import atomic_write
from dnet_tune.graph_step import GraphedIteration, resolve_graph
from dnet_tune.method.methods import Batch, Method, create_method
from dnet_tune.models.registry import create_model
from dnet_tune.schedule import lr_at
from dnet_tune.shot_groups import SHOT_GROUPS
from dnet_tune.stage2 import Stage2, check_stage2_model

CHECKPOINT_FORMAT = 1
# Steps between finiteness checks of the training loss: each check is one device->host sync,
# so a diverged run fails within this many steps instead of paying a sync per step.
FINITE_CHECK_EVERY = 50


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device is '{name}' but no CUDA GPU is visible; use auto or cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    apply_determinism(deterministic)


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """An independent, reproducible stream per (seed, epoch, purpose)."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def _rng_state() -> dict[str, Any]:
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_rest": [int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    pos, has_gauss, cached = state["numpy_rest"]
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_finite(total: torch.Tensor, epoch: int) -> None:
    value = float(total)
    if not math.isfinite(value):
        raise FloatingPointError(f"training loss became {value} at epoch {epoch + 1}")


class Trainer:
    """Owns θ, φ (inside the method), optimisers, `a`, the epoch counter and the selection."""

    distributed = False  # one rank of several: dnet_tune.distributed.trainer.DistributedTrainer

    def __init__(self, cfg: Config, dataset: LTDataset | None = None) -> None:
        if cfg.train.workers != 1 and not self.distributed:  # never silently one process
            raise UserError(f"train.workers={cfg.train.workers} needs that many processes: "
                            f"run it with dnet-tune train (which starts them), or set "
                            f"train.workers=1")
        # Before any work: CPU results depend on the intra-op thread count, so it is part of
        # the config, and `auto` becomes the number that runs (and is recorded).
        cfg = resolve_threads(cfg, torch.get_num_threads())
        torch.set_num_threads(int(cfg.train.threads))
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        seed_everything(cfg.train.seed, resolve_deterministic(cfg.train.deterministic,
                                                              self.device))
        self.ds = dataset if dataset is not None else build_dataset(cfg.data)
        # as the threads: `auto` becomes the span that runs (and is recorded)
        self.cfg = cfg = resolve_span(cfg, self.device, self.ds)
        self.num_classes = self.ds.num_classes
        self.train_counts = self.ds.train_counts()
        self.groups = self.ds.groups()
        self.model: nn.Module = channels_last(create_model(
            cfg.model, self.num_classes, self.ds.in_channels, self.ds.image_size
        ).to(self.device), self.device)
        o = cfg.optim
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=o.lr, momentum=o.momentum,
            weight_decay=o.weight_decay, nesterov=o.nesterov and o.momentum > 0,
        )
        self.method: Method = create_method(cfg, self.train_counts, self.device)
        # `cuda_graph` recorded as it runs; None: the stage-1 iteration runs eagerly
        self.graph: GraphedIteration | None
        self.cfg, self.graph = resolve_graph(cfg, self.device, self.method, self.optimizer,
                                             self.model)
        d = cfg.data
        self.train_batches = make_batches(
            self.ds.train, self.ds, d.batch_size, shuffle=True, augment=d.augment,
            device=self.device, num_workers=d.num_workers, cutout_size=d.cutout_size,
            span=d.augment_span,
        )
        self.meta_batches = (
            MetaBatches(self.ds.meta, self.ds, d.meta_batch_size, self.device, d.num_workers)
            if len(self.ds.meta) > 0 else None
        )
        self._eval = {
            name: make_batches(split, self.ds, d.eval_batch_size, shuffle=False, augment="none",
                               device=self.device, num_workers=d.num_workers)
            for name, split in (("meta", self.ds.meta), ("val", self.ds.val),
                                ("test", self.ds.test)) if len(split) > 0
        }
        # Without V (the authors' `paper` profile has none) nothing is selected: the last
        # epoch is reported. Selecting on test instead would be leakage.
        self.selects_on_val = "val" in self._eval
        self.epoch = 0  # completed epochs
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.best_model: dict[str, torch.Tensor] | None = None
        self.best_head: dict[str, torch.Tensor] | None = None  # set when stage 2 was selected
        self.stage2: Stage2 | None = None  # built when stage 2 starts (from stage 1's head)
        if cfg.stage2.enabled:
            check_stage2_model(self.model, cfg.model.name)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def class_accuracy(self, split: str) -> torch.Tensor:
        """Per-class top-1 accuracy, eval mode, no augmentation; in stage 2 through its head.

        The counts stay on the device until the split is done, one host copy at the end: a
        per-batch `.cpu()` waited for the GPU every batch. They are counted by comparison with
        every class (a batch × C mask), not `bincount`, which sizes its output from its input's
        maximum, read on the host. Exact integers, so the accuracies are those of the per-batch
        host counts they replace.
        """
        training = self.model.training
        self.model.eval()
        classes = torch.arange(self.num_classes, device=self.device)
        correct = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)
        total = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)
        for x, y in self._eval[split].epoch(None):
            x = channels_last(x, self.device)
            if self.stage2 is not None:
                pred = self.stage2.logits(x).argmax(dim=1)
            else:
                with autocast(self.device, self.cfg.train.precision):
                    pred = self.model(x).argmax(dim=1)
            y = y.to(pred.device)
            hits = y[:, None] == classes
            total += hits.sum(dim=0)
            correct += (hits & (pred == y)[:, None]).sum(dim=0)
        self.model.train(training)
        correct, total = self._reduce_counts(correct, total)
        correct_h, total_h = correct.double().cpu(), total.double().cpu()
        return (correct_h / total_h.clamp(min=1)).float()

    def _reduce_counts(self, correct: torch.Tensor, total: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-class counts of the whole split (one process saw all of it)."""
        return correct, total

    def _split_metrics(self, prefix: str, acc: torch.Tensor) -> dict[str, float]:
        counts = torch.tensor(self._split_counts(prefix), dtype=torch.float64)
        overall = float((acc.double() * counts).sum() / counts.sum())
        out = {f"{prefix}_acc": overall}
        for g in SHOT_GROUPS:
            idx = self.groups[g]
            out[f"{prefix}_{g}"] = float(acc[idx].mean()) if idx else float("nan")
        return out

    def _split_counts(self, name: str) -> list[int]:
        split: Split = getattr(self.ds, name)
        return split.counts(self.num_classes)

    def _refresh_class_acc(self) -> None:
        if self.method.uses_class_acc and "meta" in self._eval:
            self.method.set_class_acc(self.class_accuracy("meta"))

    # ------------------------------------------------------------------ training
    def in_stage2(self) -> bool:
        """Whether the next epoch is a stage-2 epoch."""
        return self.cfg.stage2.enabled and self.epoch >= self.cfg.train.epochs

    def _stage1_epoch(self) -> tuple[float, Iterator[tuple[torch.Tensor, int]]]:
        cfg, e = self.cfg, self.epoch
        if cfg.method.acc_refresh == "before_epoch":
            self._refresh_class_acc()
        lr = lr_at(cfg, e)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        meta_stream = (
            self._to_memory_format(self.meta_batches.stream(epoch_generator(cfg.train.seed, e, 1)))
            if self.meta_batches is not None else None
        )
        self.model.train()
        batches = self._to_memory_format(
            self.train_batches.epoch(epoch_generator(cfg.train.seed, e, 0)))
        train_step = self.graph.train_step if self.graph is not None else self.method.train_step
        steps = ((train_step(self.model, x, y, self.optimizer, lr, meta_stream),
                  len(y)) for x, y in batches)
        return lr, steps

    def _run_steps(self, steps: Iterator[tuple[torch.Tensor, int]]) -> float:
        """Mean training loss. The sum stays on the device (float64): no host sync per step;
        finiteness is checked every FINITE_CHECK_EVERY steps and at the end."""
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        n = 0
        for step, (loss, size) in enumerate(steps, start=1):
            total += loss.double() * size
            n += size
            if step % FINITE_CHECK_EVERY == 0:
                _check_finite(total, self.epoch)
        _check_finite(total, self.epoch)
        return float(total) / max(n, 1)

    def run_epoch(self) -> dict[str, Any]:
        cfg, e = self.cfg, self.epoch
        start = time.perf_counter()
        stage = 2 if self.in_stage2() else 1
        if stage == 2:
            if self.stage2 is None:
                if cfg.stage2.init == "best_val" and self.selects_on_val and self.best_model:
                    self.model.load_state_dict(self.best_model)
                self.stage2 = Stage2(cfg, self.model, self.ds, self.device)
            lr, steps = self.stage2.epoch_steps(e - cfg.train.epochs,
                                                epoch_generator(cfg.train.seed, e, 2),
                                                self._to_memory_format)
        else:
            lr, steps = self._stage1_epoch()
        train_loss = self._run_steps(steps)
        info: dict[str, Any] = {}
        if stage == 1:
            # The epoch's `a` and the d, w that φ gives it after the epoch's last Difficulty-Net
            # step: the weights the epoch ended with. Taken before an after-epoch refresh of
            # `a`, which belongs to the next epoch. (Taken before the steps, a row showed the
            # weights the previous epoch ended with: one epoch behind.)
            info = self.method.epoch_info()
            if cfg.method.acc_refresh == "after_epoch":
                self._refresh_class_acc()
        if self.stage2 is not None:
            info = self.stage2.epoch_info()  # the scales the evaluation below uses
        self.epoch += 1
        metrics: dict[str, Any] = {"epoch": self.epoch, "stage": stage, "lr": lr,
                                   "train_loss": train_loss}
        if self.selects_on_val:
            metrics.update(self._split_metrics("val", self.class_accuracy("val")))
        else:
            metrics.update({f"val_{k}": float("nan") for k in ("acc", *SHOT_GROUPS)})
        # Decided on val alone, before test is looked at: test never influences selection.
        improved = (self.best is None or not self.selects_on_val
                    or metrics["val_acc"] > self.best["val_acc"])
        if cfg.train.test_eval == "every_epoch" or improved:
            test_acc = self.class_accuracy("test")
            metrics.update(self._split_metrics("test", test_acc))
            # per class as well: the groups' means hide which tail classes a method gives up
            metrics["test_class_acc"] = test_acc.tolist()
        else:
            metrics.update({f"test_{k}": float("nan") for k in ("acc", *SHOT_GROUPS)})
            metrics["test_class_acc"] = None
        metrics["epoch_time_s"] = time.perf_counter() - start
        metrics.update(info)
        self.history.append(metrics)
        if improved:
            self.best = dict(metrics)
            self.best_model = copy.deepcopy(self.model.state_dict())
            self.best_head = (copy.deepcopy(self.stage2.head.state_dict())
                              if self.stage2 is not None else None)
        return metrics

    def _to_memory_format(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        if self.device.type != "cuda":
            return batches
        return ((channels_last(x, self.device), y) for x, y in batches)

    def fit(self) -> Iterator[dict[str, Any]]:
        while self.epoch < total_epochs(self.cfg):
            yield self.run_epoch()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": config_to_dict(self.cfg),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "history": self.history,
            "best": self.best,
            "best_model": self.best_model,
            "best_head": self.best_head,
            "stage2": self.stage2.state_dict() if self.stage2 is not None else None,
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"checkpoint format {state.get('format')} is not supported "
                            f"(expected {CHECKPOINT_FORMAT})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best = state["best"]
        self.best_model = state["best_model"]
        self.best_head = state.get("best_head")
        self._load_stage2(state.get("stage2"))
        _set_rng_state(state["rng"])

    def _load_stage2(self, state: dict[str, Any] | None) -> None:
        """Stage-2 state exists exactly when the checkpoint is past stage 1's last epoch."""
        past_stage1 = self.cfg.stage2.enabled and self.epoch > self.cfg.train.epochs
        if past_stage1 != (state is not None):
            raise UserError(
                f"the checkpoint at epoch {self.epoch} is {'' if state else 'not '}in stage 2, "
                f"but the config ends stage 1 at epoch {self.cfg.train.epochs} with "
                f"stage2.enabled={self.cfg.stage2.enabled}")
        self.stage2 = None
        if state is not None:
            self.stage2 = Stage2(self.cfg, self.model, self.ds, self.device)
            self.stage2.load_state_dict(state)


def save_checkpoint(trainer: Trainer, path: str) -> None:
    state = trainer.state_dict()
    atomic_write(path, lambda p: torch.save(state, p))


# what `Trainer.load_state_dict` cannot do without (best_head and stage2 may be absent)
CHECKPOINT_KEYS = ("format", "config", "epoch", "model", "optimizer", "method", "history",
                   "best", "best_model", "rng")


def load_checkpoint(path: str, remedy: str = "restore it from a backup copy") -> dict[str, Any]:
    """The state `save_checkpoint` wrote; anything else is one line naming the file, with
    `remedy` as what to do.

    `weights_only=True`: a checkpoint is data, never code. A file cut short, a text file or
    random bytes make torch.load raise whatever its zip reader or restricted unpickler trips on
    (RuntimeError, UnpicklingError, EOFError, KeyError, ...): that is the file, never our bug.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint '{path}' does not exist") from None
    except OSError as exc:
        raise UserError(f"cannot read checkpoint '{path}' ({exc.strerror or exc})") from None
    except Exception as exc:
        raise DamagedFile(path, f"torch.load cannot read it: {describe(exc)}", remedy) from None
    if not isinstance(state, dict):
        raise DamagedFile(path, f"it holds a {type(state).__name__}, not a dnet-tune "
                                f"checkpoint", remedy)
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise DamagedFile(path, f"not a dnet-tune checkpoint: no {', '.join(missing)}", remedy)
    if state["format"] != CHECKPOINT_FORMAT:
        raise UserError(f"checkpoint '{path}' has format {state['format']!r}; this dnet-tune "
                        f"reads format {CHECKPOINT_FORMAT}")
    return state
