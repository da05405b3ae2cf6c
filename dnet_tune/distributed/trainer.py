"""One run trained by several processes (`train.workers` > 1) that compute what one process would.

Each rank builds the same Trainer (same seed: same θ, φ, data order and augmentation draws) and
then differs in one way only: it works on its shard of every global batch (`Comm.shard`).
Gradients, the meta step's quantities (dnet_tune.distributed.meta_step), BatchNorm statistics
(dnet_tune.distributed.sync_bn) and evaluation counts are all-reduced, so θ and φ stay identical on
every rank and equal to the one-process run's up to floating-point rounding.

Cost, said plainly: for in-memory datasets every rank augments the whole global batch and keeps
its shard. That is what keeps each image's augmentation the one-process run's draw (the batch ops
draw from one generator for the whole batch), and on the device it is cheap. File datasets and
meta batches load only the rank's shard: their items carry their own seeds.

`run_distributed` is the entry for a process whose default process group is already initialised:
the CLI's spawner (dnet_tune.distributed.launch) and a Ray Train worker both call it. Rank 0
writes the run's files (atomically, as a one-process run does); the others only train.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from dnet_tune.config import Config
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.loader import FileBatches, MetaBatches, PILFileBatches, make_batches
from dnet_tune.distributed.comm import Batch, Comm, backend_for
from dnet_tune.distributed.meta_step import DistributedSteps
from dnet_tune.distributed.sync_bn import convert_sync_bn, unsupported_norms
from dnet_tune.errors import UserError
from dnet_tune.method import DIFFICULTY_NET
from dnet_tune.run import train_to_dir
from dnet_tune.train import Trainer


def check_distributed(cfg: Config) -> None:
    """Everything about a config that cannot run with several workers, one line each, before
    any process starts. Bad input only: what can run, runs."""
    w = cfg.train.workers
    if w < 1:
        raise UserError(f"train.workers (--workers) must be >= 1, got {w}")
    if w == 1:
        return
    if _uses_meta_batches(cfg) and cfg.method.meta_impl == "reference":
        raise UserError("method.meta_impl: reference (the double-backward check) cannot run "
                        "with --workers; use method.meta_impl=jvp (the same gradient) or drop "
                        "--workers")
    if cfg.train.cuda_graph is True:
        raise UserError("train.cuda_graph=on cannot run with --workers (a captured step "
                        "would skip the all-reduces between ranks); set train.cuda_graph=auto "
                        "or off, or drop --workers")
    if cfg.stage2.enabled:
        raise UserError("stage 2 does not run with --workers yet: train with stage2.enabled="
                        "false, or drop --workers")
    sizes = [("data.batch_size", cfg.data.batch_size)]
    if _uses_meta_batches(cfg):
        sizes.append(("data.meta_batch_size", cfg.data.meta_batch_size))
    for key, size in sizes:
        if size % w:
            raise UserError(f"{key}={size} is the global batch and must split evenly across "
                            f"--workers {w}; choose a multiple of {w}")
    device = cfg.train.device
    if device.startswith("cuda:"):
        raise UserError(f"train.device={device} names one GPU, but --workers {w} puts one "
                        f"worker on each GPU; use train.device=cuda or auto")


def check_local_launch(cfg: Config) -> str:
    """What starting `train.workers` processes on this machine needs (the CLI's spawn, not a
    Ray Train worker, which sees only its own GPU): one GPU per worker on CUDA, the backend.
    Returns the backend."""
    w = cfg.train.workers
    device = cfg.train.device
    uses_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if uses_cuda and torch.cuda.device_count() < w:
        raise UserError(f"--workers {w} needs {w} GPUs (one per worker), "
                        f"{torch.cuda.device_count()} visible; lower --workers")
    return backend_for(torch.device("cuda" if uses_cuda else "cpu"))


def _uses_meta_batches(cfg: Config) -> bool:
    return cfg.method.name == DIFFICULTY_NET and cfg.method.meta_grad == "full"


def _part(split: Split, comm: Comm) -> Split:
    """This rank's strided share of an evaluation split: each image on exactly one rank."""
    idx = np.arange(comm.rank, len(split), comm.world)
    return Split(labels=split.labels[idx],
                 images=split.images[torch.from_numpy(idx)] if split.images is not None
                 else None,
                 paths=[split.paths[i] for i in idx] if split.paths is not None else None)


class _ShardedBatches:
    """A global batch iterator (`epoch`), each batch cut to this rank's shard. File batches
    decode only the shard (each item carries its own augmentation seed); in-memory batches are
    augmented whole, from one generator, and cut afterwards."""

    def __init__(self, inner: Any, comm: Comm) -> None:
        self.inner, self.comm = inner, comm

    def __len__(self) -> int:
        return len(self.inner)

    def epoch(self, generator: torch.Generator | None,
              order: torch.Tensor | None = None) -> Iterator[Batch]:
        if isinstance(self.inner, FileBatches | PILFileBatches):
            return self.inner.epoch(generator, order, shard=self.comm.shard)
        return self.comm.shard_batches(self.inner.epoch(generator, order))


class _ShardedMeta:
    def __init__(self, inner: MetaBatches, comm: Comm) -> None:
        self.inner, self.comm = inner, comm

    def stream(self, generator: torch.Generator | None) -> Iterator[Batch]:
        return self.inner.stream(generator, shard=self.comm.shard)


class DistributedTrainer(Trainer):
    """A Trainer on one rank of a run trained by `comm.world` processes."""

    distributed = True

    def __init__(self, cfg: Config, comm: Comm, dataset: LTDataset | None = None) -> None:
        check_distributed(cfg)
        if comm.world != cfg.train.workers:
            raise UserError(f"train.workers={cfg.train.workers} but the process group holds "
                            f"{comm.world} workers; start as many workers as the config says")
        super().__init__(cfg, dataset)
        self.comm = comm
        if cfg.model.sync_bn:
            bad = unsupported_norms(self.model)
            if bad:
                raise UserError(f"model {cfg.model.name} has BatchNorm layers that cannot be "
                                f"synchronised across workers ({', '.join(bad[:3])}); set "
                                f"model.sync_bn=false or drop --workers")
            convert_sync_bn(self.model)
        comm.broadcast_module(self.model)
        dn = getattr(self.method, "dn", None)
        if isinstance(dn, torch.nn.Module):
            comm.broadcast_module(dn)
        self.method.dist = DistributedSteps(comm)
        d = cfg.data
        meta_size = self.meta_batches.batch_size if self.meta_batches is not None else 0
        if _uses_meta_batches(cfg) and meta_size % comm.world:
            raise UserError(f"the meta batch holds {meta_size} images (all of the meta set H) "
                            f"and cannot split evenly across {comm.world} workers; use a "
                            f"larger data.meta_per_class or a data.meta_batch_size that is a "
                            f"multiple of {comm.world}")
        last = len(self.ds.train) % d.batch_size
        if 0 < last < comm.world:
            raise UserError(f"data.batch_size={d.batch_size} leaves a last batch of {last} "
                            f"image(s) per epoch, fewer than the {comm.world} workers; choose "
                            f"a batch size that leaves none or at least {comm.world}")
        self.train_batches = _ShardedBatches(self.train_batches, comm)  # type: ignore[assignment]
        if self.meta_batches is not None:
            self.meta_batches = _ShardedMeta(self.meta_batches, comm)  # type: ignore[assignment]
        self._eval = {
            name: make_batches(_part(getattr(self.ds, name), comm), self.ds, d.eval_batch_size,
                               shuffle=False, augment="none", device=self.device,
                               num_workers=d.num_workers)
            for name in self._eval
        }

    def _reduce_counts(self, correct: torch.Tensor, total: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        both = self.comm.sum(torch.stack([correct, total]).to(self.device)).cpu()
        return both[0], both[1]

    def _run_steps(self, steps: Iterator[tuple[torch.Tensor, int]]) -> float:
        """The mean training loss over the global batches (each rank saw its shards)."""
        seen = [0]

        def counted() -> Iterator[tuple[torch.Tensor, int]]:
            for loss, size in steps:
                seen[0] += size
                yield loss, size

        local_mean = super()._run_steps(counted())
        pair = torch.tensor([local_mean * seen[0], float(seen[0])], dtype=torch.float64,
                            device=self.device)
        total, n = self.comm.sum(pair).tolist()
        return total / max(n, 1.0)


def run_distributed(
    cfg: Config | None,
    output: str,
    *,
    comm: Comm | None = None,
    resume: bool = False,
    extend: int | None = None,
    on_start: Callable[[Any], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train one run on this rank of an initialised process group (rank and world from
    torch.distributed unless `comm` is given); rank 0 writes `output`. Every rank returns the
    final summary. `on_start`/`on_epoch` are called on every rank; give them to rank 0 only
    for console output."""
    comm = comm if comm is not None else Comm.from_process_group()
    return train_to_dir(cfg, output, resume=resume, extend=extend, on_start=on_start,
                        on_epoch=on_epoch, writes=comm.rank == 0,
                        make_trainer=lambda c: DistributedTrainer(c, comm))

