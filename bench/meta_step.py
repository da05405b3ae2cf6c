"""Cost of the Difficulty-Net meta step: the JVP meta-gradient vs the double-backward reference.

ResNet-32 on CIFAR-sized inputs (3x32x32), batch 128, meta batch 100, one real `Trainer` per case
built from the dataset recipe; each case times `trainer.method.train_step(...)` exactly as
`Trainer.run_epoch` calls it (same model, optimiser, learning rate and meta-batch stream):

- `ce`: the plain cross-entropy step every ratio is taken against;
- `ref_k1`, `jvp_k1`: Difficulty-Net, `meta_grad: full`, `meta_impl` reference / jvp, a meta step
  every iteration;
- `ref_k10`, `jvp_k10`: the same with `meta_interval: 10`, timed over windows of 10 iterations
  (one meta step, ten real steps) and reported per iteration.

Timing: warm-up windows first, then rounds in which every Difficulty-Net case runs one window,
in a rotating order (reference and JVP alternate), each right after a one-iteration `ce` window;
"paired" is the median over rounds of that window's ratio to its `ce` neighbour, which cancels
the drifting load of a shared machine best. On CUDA each window is bracketed by
`torch.cuda.synchronize()`. Mini-batches are drawn before timing
(augmentation off); the meta batch is drawn inside `train_step`, as in training.

Memory, measured per case in a separate pass of one window after warm-up: on CPU the increase
of the process's peak RSS over its RSS before the window (the peak is reset through
/proc/self/clear_refs and freed heap returned with malloc_trim first, so each case is measured
on its own); on CUDA `torch.cuda.max_memory_allocated()` over the memory allocated before.

`--graph` (CUDA only): every case with `train.cuda_graph: true`, so each window replays the
captured iteration(s) through `Trainer.graph.train_step`; the warm-up then covers the eager
warm-up iterations and the captures (`graph_step.WARMUP_STEPS` + 1 per kind).

Run: `python bench/meta_step.py [--device cpu|cuda] [--graph] [--quick] [--repeats N] [--out PATH]`.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import RESULTS, default_data_dir, machine_info  # bench/ is the script's folder

from dnet_tune.config import Config
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.cifar import CIFAR10, CIFAR100
from dnet_tune.data.longtail import lt_counts
from dnet_tune.data.registry import build_dataset
from dnet_tune.errors import UserError
from dnet_tune.fileio import atomic_write_json
from dnet_tune.graph_step import WARMUP_STEPS
from dnet_tune.run import resolve_config
from dnet_tune.schedule import lr_at
from dnet_tune.train import Trainer, epoch_generator

SEED = 0
N_BATCHES = 8  # distinct mini-batches, cycled

Batch = tuple[torch.Tensor, torch.Tensor]


# ----------------------------------------------------------------------------- data and machine


def synthetic_cifar(dataset: str) -> LTDataset:
    """Random uint8 tensors of CIFAR shape with the CIFAR-LT (IF 100) class profile."""
    spec = CIFAR10 if dataset == "cifar10_lt" else CIFAR100
    gen = torch.Generator().manual_seed(SEED)
    c = spec.num_classes

    def split(counts: list[int]) -> Split:
        labels = np.repeat(np.arange(c), counts).astype(np.int64)
        images = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=gen, dtype=torch.uint8)
        return Split(labels=labels, images=images)

    return LTDataset(
        name=dataset, num_classes=c, train=split(lt_counts(spec.full - 50, c, 100.0)),
        meta=split([25] * c), val=split([25] * c), test=split([10] * c),
        mean=spec.mean, std=spec.std, image_size=32, in_channels=3,
    )


def load_dataset(cfg: Config) -> tuple[LTDataset, str]:
    try:
        return build_dataset(cfg.data), f"real ({cfg.data.name} from {cfg.data.data_dir})"
    except UserError as exc:
        print(f"  real CIFAR not usable ({exc}); using synthetic tensors", flush=True)
        return synthetic_cifar(cfg.data.name), "synthetic (random uint8 tensors, CIFAR-LT shape)"


def draw_batches(trainer: Trainer, batch_size: int, n: int) -> list[Batch]:
    """The first `n` full mini-batches of the Trainer's own epoch stream (epochs 0, 1, ...)."""
    batches: list[Batch] = []
    epoch = 0
    while len(batches) < n:
        gen = epoch_generator(trainer.cfg.train.seed, epoch, 0)
        batches += [(x, y) for x, y in trainer.train_batches.epoch(gen) if len(y) == batch_size]
        epoch += 1
        if not batches:
            raise RuntimeError("the train split is smaller than one batch")
    return batches[:n]


# ----------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Case:
    name: str
    method: dict[str, Any]
    window: int = 1  # iterations per timed sample (meta_interval, to amortise)


def _dn(impl: str, k: int) -> dict[str, Any]:
    return {"name": "difficulty_net", "meta_grad": "full", "meta_impl": impl, "meta_interval": k}


CASES = (
    Case("ce", {"name": "ce"}),
    Case("ref_k1", _dn("reference", 1)),
    Case("jvp_k1", _dn("jvp", 1)),
    Case("ref_k10", _dn("reference", 10), window=10),
    Case("jvp_k10", _dn("jvp", 10), window=10),
)


@dataclass
class Runner:
    case: Case
    trainer: Trainer
    lr: float
    meta_stream: Any
    batches: list[Batch] = field(default_factory=list)
    step: int = 0
    samples: list[float] = field(default_factory=list)
    peak_mib: float = float("nan")
    last_loss: float = float("nan")
    cpu_s: float = 0.0  # process CPU seconds over the timed windows (all threads)
    paired: list[float] = field(default_factory=list)  # sample / the ce sample just before

    def window(self) -> float:
        """Run one window; returns wall seconds per iteration (device work included)."""
        t = self.trainer
        sync(t.device)
        c0, t0 = time.process_time(), time.perf_counter()
        loss = torch.zeros((), device=t.device)
        for _ in range(self.case.window):
            x, y = self.batches[self.step % len(self.batches)]
            self.step += 1
            step = t.graph.train_step if t.graph is not None else t.method.train_step
            loss = step(t.model, x, y, t.optimizer, self.lr, self.meta_stream)
        sync(t.device)
        elapsed = (time.perf_counter() - t0) / self.case.window
        self.cpu_s += time.process_time() - c0
        self.last_loss = float(loss)  # after the clock: one host read per window
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.case.name}: training loss became {self.last_loss}")
        return elapsed


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB -> MiB
    raise KeyError(key)


def measure_peak(runner: Runner) -> tuple[float, str]:
    """Peak memory of one window above what was held before it (MiB), and how it was read."""
    device = runner.trainer.device
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        runner.window()
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20, "cuda_max_allocated"
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _proc_status("VmRSS")
        runner.window()
        return _proc_status("VmHWM") - base, "rss_hwm_reset"
    except OSError:  # not Linux: the process-wide high-water mark, order-dependent
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        runner.window()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before, "ru_maxrss"


def make_config(dataset: str, case: Case, batch: int, meta_batch: int, device: str,
                data_dir: str | None, graph: bool = False) -> Config:
    data: dict[str, Any] = {"batch_size": batch, "meta_batch_size": meta_batch, "augment": "none"}
    if data_dir is not None:
        data["data_dir"] = data_dir
    return resolve_config(dataset=dataset, overrides={
        "data": data, "model": {"name": "resnet32"}, "method": case.method,
        "train": {"device": device, "seed": SEED, "cuda_graph": graph}})


def make_runner(cfg: Config, case: Case, ds: LTDataset) -> Runner:
    trainer = Trainer(cfg, dataset=ds)
    lr = lr_at(cfg, 0)  # as run_epoch does for epoch 0
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
    stream = (trainer._to_memory_format(trainer.meta_batches.stream(
        epoch_generator(cfg.train.seed, 0, 1))) if trainer.meta_batches is not None else None)
    trainer.model.train()
    if trainer.method.uses_class_acc:  # `a` as after a first epoch: non-zero, so φ gets gradient
        trainer.method.set_class_acc(torch.linspace(0.9, 0.1, trainer.num_classes))
    return Runner(case, trainer, lr, stream)


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    data_dir = args.data_dir or default_data_dir()
    cfg0 = make_config(args.dataset, CASES[0], args.batch, args.meta_batch, args.device, data_dir)
    ds, source = load_dataset(cfg0)
    runners = [make_runner(make_config(args.dataset, c, args.batch, args.meta_batch,
                                       args.device, data_dir, args.graph), c, ds) for c in CASES]
    batches = draw_batches(runners[0].trainer, args.batch, N_BATCHES)
    for r in runners:
        r.batches = list(r.trainer._to_memory_format(iter(batches)))

    for r in runners:
        for _ in range(args.warmup):
            r.window()
    for r in runners:
        r.peak_mib, memory_kind = measure_peak(r)
        r.cpu_s = 0.0
    # Every Difficulty-Net window is preceded by a `ce` window: its ratio to that neighbour
    # ("paired") follows the machine's load, which on a shared machine drifts within a round.
    base, others = runners[0], runners[1:]
    for rnd in range(args.repeats):
        k = rnd % len(others)
        for r in others[k:] + others[:k]:
            b = base.window()
            s = r.window()
            base.samples.append(b)
            r.samples.append(s)
            r.paired.append(s / b)

    base_med = statistics.median(base.samples)
    cases: dict[str, Any] = {}
    for r in runners:
        med = statistics.median(r.samples)
        paired = r.paired or [1.0]
        cases[r.case.name] = {
            "method": r.case.method,
            "window_iterations": r.case.window,
            "samples": len(r.samples),
            "median_s": med,
            "min_s": min(r.samples),
            "max_s": max(r.samples),
            "ratio_to_ce": med / base_med,
            "paired_ratio_median": statistics.median(paired),
            "min_ratio": min(r.samples) / min(base.samples),
            "peak_mib": round(r.peak_mib, 1),
            # process CPU s / wall s: with 2 threads ~2 on idle cores, lower when other
            # processes took the CPU
            "cpu_per_wall": round(r.cpu_s / (sum(r.samples) * r.case.window), 2),
            "last_loss": r.last_loss,
        }
    for k in ("k1", "k10"):
        ref, jvp = cases[f"ref_{k}"], cases[f"jvp_{k}"]
        jvp["speedup_vs_reference"] = ref["median_s"] / jvp["median_s"]
    trainer = base.trainer
    return {
        "dataset": args.dataset,
        "dataset_source": source,
        "model": "resnet32",
        "cuda_graph": args.graph,
        "num_params": sum(p.numel() for p in trainer.model.parameters()),
        "num_classes": ds.num_classes,
        "batch_size": args.batch,
        "meta_batch_size": args.meta_batch,
        "lr": base.lr,
        "dn_hidden": runners[1].trainer.cfg.dn.hidden,
        "warmup_windows": args.warmup,
        "rounds": args.repeats,
        "memory": memory_kind,
        "wall_s": round(time.perf_counter() - t_start, 1),
        "cases": cases,
    }


def print_table(res: dict[str, Any]) -> None:
    print(f"\nresnet32/{res['dataset']} b{res['batch_size']} m{res['meta_batch_size']}  "
          f"[{res['dataset_source']}]  memory: {res['memory']}")
    print(f"  {'case':<8} {'median s/it':>12} {'ratio/ce':>9} {'paired':>7} {'min':>6} "
          f"{'peak MiB':>9} {'cpu/wall':>8}")
    for name, c in res["cases"].items():
        print(f"  {name:<8} {c['median_s']:>12.4f} {c['ratio_to_ce']:>9.2f} "
              f"{c['paired_ratio_median']:>7.2f} {c['min_ratio']:>6.2f} {c['peak_mib']:>9.1f} "
              f"{c['cpu_per_wall']:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--dataset", default="cifar10_lt", choices=["cifar10_lt", "cifar100_lt"])
    p.add_argument("--out", default=None,
                   help="JSON output (default bench/results/meta_step[_cuda][_quick].json)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds (default 6 on CPU, 30 on CUDA, 2 with --quick)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed windows per case first (default 1 on CPU, 3 on CUDA)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run in seconds: batch 8, meta batch 8, 2 rounds")
    p.add_argument("--graph", action="store_true",
                   help="train.cuda_graph: true (CUDA only): time the graphed iteration")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--data-dir", default=None,
                   help="CIFAR data dir (default $DNET_DATA_DIR, else ../shared/data); "
                        "synthetic tensors when the files are missing")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA GPU is visible")
    args.batch, args.meta_batch = (8, 8) if args.quick else (128, 100)
    if args.repeats is None:
        args.repeats = 2 if args.quick else (30 if cuda else 6)
    if args.graph and not cuda:
        p.error("--graph needs --device cuda (CUDA graphs)")
    if args.warmup is None:
        args.warmup = 3 if cuda else 1
    if args.graph:  # eager warm-up steps and the captures of both kinds stay untimed
        args.warmup = max(args.warmup, WARMUP_STEPS + 1)
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    stem = ("meta_step" + ("_cuda" if cuda else "") + ("_graph" if args.graph else "")
            + ("_quick" if args.quick else ""))
    out = Path(args.out) if args.out else RESULTS / f"{stem}.json"

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "benchmark": "meta_step",
        "quick": args.quick,
        "machine": machine_info(args.device, args.threads),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "timing": "median wall seconds per training iteration (train_step only, after warm-up; "
                  "k10 cases amortised over windows of 10 iterations)",
    }
    print(f"resnet32 on {args.dataset}, {args.device} ...", flush=True)
    results["result"] = run(args)
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"]["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    atomic_write_json(out, results)
    print_table(results["result"])
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
