"""CPU benchmark of one training iteration: plain CE vs the Difficulty-Net meta step.

For each setting (small_cnn on digits_lt, resnet32 on CIFAR-10-LT) it builds one real `Trainer`
per case from the dataset recipe, then times `trainer.method.train_step(...)` exactly as
`Trainer.run_epoch` calls it (same model, optimiser, learning rate and meta-batch stream):

- `ce`: plain cross-entropy step (the baseline every ratio is taken against);
- `dn_full_k1`: Difficulty-Net, `meta_grad=full`, `meta_interval=1` (reference double-backward
  meta step every iteration);
- `dn_full_k4`: the same with `meta_interval=4`, timed over windows of 4 iterations and reported
  per iteration (amortised);
- `dn_detached`: `meta_grad=detached` (φ trained by the driver loss only, no virtual step).

Mini-batches are drawn before timing (augmentation off), so data preparation is not timed; the
meta batches come from the Trainer's own stream inside `train_step`, as in training. Cases are
timed in interleaved rounds (rotating order), so load from other processes on a shared machine
hits every case alike; the ratio to `ce` is the number to compare across machines.

Peak RSS is the process high-water mark (`ru_maxrss`): the increase during a case's warm-up is
shown, so a case that peaks below an earlier one shows ~0.

Run: `python bench/meta_step.py [--repeats N] [--quick] [--out PATH]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnet_tune.config import Config
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.cifar import CIFAR10
from dnet_tune.data.longtail import lt_counts
from dnet_tune.data.registry import build_dataset
from dnet_tune.errors import UserError
from dnet_tune.io import atomic_write_json
from dnet_tune.run import resolve_config
from dnet_tune.train import Trainer, epoch_generator, lr_at

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "results" / "meta_step.json"
QUICK_OUT = REPO / "bench" / "results" / "meta_step_quick.json"
SEED = 0
N_BATCHES = 8  # distinct mini-batches, cycled

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Setting:
    name: str
    dataset: str
    model: str
    batch_size: int
    meta_batch_size: int = 100
    repeats_scale: int = 1  # cheap settings take more rounds for the same wall time


@dataclass(frozen=True)
class Case:
    name: str
    method: dict[str, Any]
    window: int = 1  # iterations per timed sample (meta_interval, to amortise)


CASES = (
    Case("ce", {"name": "ce"}),
    Case("dn_detached", {"name": "difficulty_net", "meta_grad": "detached", "meta_interval": 1}),
    Case("dn_full_k1", {"name": "difficulty_net", "meta_grad": "full", "meta_interval": 1}),
    Case("dn_full_k4", {"name": "difficulty_net", "meta_grad": "full", "meta_interval": 4},
         window=4),
)

SETTINGS = (
    Setting("small_cnn/digits_lt/b64", "digits_lt", "small_cnn", 64, repeats_scale=5),
    Setting("resnet32/cifar10_lt/b128", "cifar10_lt", "resnet32", 128),
)
# --quick: same code paths, tiny batches, so the whole run takes a few seconds.
QUICK_SETTINGS = (
    Setting("small_cnn/digits_lt/b64", "digits_lt", "small_cnn", 64),
    Setting("resnet32/cifar10_lt/b8", "cifar10_lt", "resnet32", 8, meta_batch_size=8),
)


@dataclass
class Runner:
    case: Case
    trainer: Trainer
    batches: list[Batch]
    lr: float
    meta_stream: Any
    step: int = 0
    samples: list[float] = field(default_factory=list)
    cpu_s: float = 0.0  # process CPU seconds over the timed samples (all threads)
    rss_delta_mib: float = 0.0
    last_loss: float = float("nan")

    def iterate(self, n: int) -> None:
        t = self.trainer
        for _ in range(n):
            x, y = self.batches[self.step % len(self.batches)]
            self.step += 1
            loss = t.method.train_step(t.model, x, y, t.optimizer, self.lr, self.meta_stream)
            if not np.isfinite(loss):
                raise FloatingPointError(f"{self.case.name}: training loss became {loss}")
            self.last_loss = loss


def peak_rss_mib() -> float:
    """Process peak RSS in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def synthetic_cifar10() -> LTDataset:
    """Random uint8 tensors of CIFAR shape with the CIFAR-10-LT (IF 100) class profile."""
    gen = torch.Generator().manual_seed(SEED)
    c = CIFAR10.num_classes

    def split(counts: list[int]) -> Split:
        labels = np.repeat(np.arange(c), counts).astype(np.int64)
        images = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=gen, dtype=torch.uint8)
        return Split(labels=labels, images=images)

    return LTDataset(
        name="cifar10_lt", num_classes=c, train=split(lt_counts(4950, c, 100.0)),
        meta=split([25] * c), val=split([25] * c), test=split([100] * c),
        mean=CIFAR10.mean, std=CIFAR10.std, image_size=32, in_channels=3,
    )


def make_config(setting: Setting, case: Case, data_dir: str | None) -> Config:
    data: dict[str, Any] = {
        "batch_size": setting.batch_size,
        "meta_batch_size": setting.meta_batch_size,
        "augment": "none",  # batches are prepared before timing; augmentation is not measured
    }
    if data_dir is not None:
        data["data_dir"] = data_dir
    return resolve_config(
        dataset=setting.dataset,
        overrides={
            "data": data,
            "model": {"name": setting.model},
            "method": case.method,
            "train": {"device": "cpu", "seed": SEED},
        },
    )


def load_dataset(setting: Setting, data_dir: str | None) -> tuple[LTDataset, str]:
    cfg = make_config(setting, CASES[0], data_dir)
    if setting.dataset == "digits_lt":
        return build_dataset(cfg.data), "real (scikit-learn digits, bundled)"
    try:
        return build_dataset(cfg.data), f"real (CIFAR-10 subset from {cfg.data.data_dir})"
    except UserError as exc:
        print(f"  real CIFAR-10 not usable ({exc}); using synthetic tensors", flush=True)
        return synthetic_cifar10(), "synthetic (random uint8 tensors, CIFAR-10-LT shape)"


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


def make_runner(setting: Setting, case: Case, ds: LTDataset, data_dir: str | None) -> Runner:
    cfg = make_config(setting, case, data_dir)
    trainer = Trainer(cfg, dataset=ds)
    # As run_epoch does for epoch 0: set the lr, open the meta stream, train mode.
    lr = lr_at(cfg, 0)
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
    meta_stream = (
        trainer.meta_batches.stream(epoch_generator(cfg.train.seed, 0, 1))
        if trainer.meta_batches is not None else None
    )
    trainer.model.train()
    # `a` as after the first epoch's refresh (non-zero, so the DN's first layer gets gradient).
    if trainer.method.uses_class_acc:
        trainer.method.set_class_acc(torch.linspace(0.9, 0.1, trainer.num_classes))
    return Runner(case, trainer, [], lr, meta_stream)


def run_setting(setting: Setting, data_dir: str | None, warmup: int, repeats: int
                ) -> dict[str, Any]:
    repeats *= setting.repeats_scale
    t_start = time.perf_counter()
    ds, source = load_dataset(setting, data_dir)
    runners = [make_runner(setting, c, ds, data_dir) for c in CASES]
    # Every case trains on the same few pre-drawn batches (cycled); identical across cases.
    batches = draw_batches(runners[0].trainer, setting.batch_size, N_BATCHES)
    for r in runners:
        r.batches = batches

    # Warm-up, one case at a time, so each case's peak-RSS increase can be read off.
    for r in runners:
        before = peak_rss_mib()
        r.iterate(warmup * r.case.window)
        r.rss_delta_mib = peak_rss_mib() - before

    # Timed rounds, interleaved with a rotating order.
    for rnd in range(repeats):
        k = rnd % len(runners)
        for r in runners[k:] + runners[:k]:
            c0, t0 = time.process_time(), time.perf_counter()
            r.iterate(r.case.window)
            r.samples.append((time.perf_counter() - t0) / r.case.window)
            r.cpu_s += time.process_time() - c0

    base = runners[0].samples
    base_med = statistics.median(base)
    cases: dict[str, Any] = {}
    for r in runners:
        med = statistics.median(r.samples)
        paired = [s / b for s, b in zip(r.samples, base, strict=True)]
        cases[r.case.name] = {
            "method": r.case.method,
            "window_iterations": r.case.window,
            "samples": len(r.samples),
            "median_s": med,
            "min_s": min(r.samples),
            "max_s": max(r.samples),
            "ratio_to_ce": med / base_med,
            "paired_ratio_median": statistics.median(paired),
            "peak_rss_increase_mib": round(r.rss_delta_mib, 1),
            # process CPU s / wall s: below 1.0 the process was waiting for a core (other load)
            "cpu_per_wall": round(r.cpu_s / (sum(r.samples) * r.case.window), 2),
            "last_loss": r.last_loss,
        }
    cfg = runners[0].trainer.cfg
    return {
        "dataset": setting.dataset,
        "dataset_source": source,
        "model": setting.model,
        "num_params": sum(p.numel() for p in runners[0].trainer.model.parameters()),
        "batch_size": setting.batch_size,
        "meta_batch_size": setting.meta_batch_size,
        "num_classes": ds.num_classes,
        "train_images": len(ds.train),
        "meta_images": len(ds.meta),
        "lr": runners[0].lr,
        "dn_hidden": cfg.dn.hidden,
        "warmup_windows": warmup,
        "rounds": repeats,
        "wall_s": round(time.perf_counter() - t_start, 1),
        "cases": cases,
    }


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except OSError:
        return {}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info(threads: int) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "threads_requested": threads,
        "cuda_available": torch.cuda.is_available(),
        "device": "cpu",
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "git": git_info(),
    }


def default_data_dir() -> str | None:
    """$DNET_DATA_DIR if set, else the shared real CIFAR subsets next to the checkout."""
    if os.environ.get("DNET_DATA_DIR"):
        return None  # the project's resolve_data_dir reads it
    shared = REPO.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def print_table(results: dict[str, Any]) -> None:
    for name, res in results["settings"].items():
        print(f"\n{name}  [{res['dataset_source']}]")
        print(f"  {'case':<12} {'median s/it':>12} {'ratio/ce':>9} {'paired':>7} "
              f"{'+RSS MiB':>9} {'cpu/wall':>8}")
        for case, c in res["cases"].items():
            print(f"  {case:<12} {c['median_s']:>12.4f} {c['ratio_to_ce']:>9.2f} "
                  f"{c['paired_ratio_median']:>7.2f} {c['peak_rss_increase_mib']:>9.1f} "
                  f"{c['cpu_per_wall']:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--out", default=None,
                   help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO)}; "
                        f"with --quick {QUICK_OUT.relative_to(REPO)})")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds per setting (default 10; 2 with --quick); the small_cnn "
                        "setting runs 5x as many")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed windows per case before timing (default 2; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run in a few seconds: tiny ResNet batch, few rounds")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--data-dir", default=None,
                   help="CIFAR data dir (default $DNET_DATA_DIR, else ../shared/data); "
                        "synthetic tensors when the files are missing")
    args = p.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if repeats < 1 or warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    out = Path(args.out) if args.out else (QUICK_OUT if args.quick else DEFAULT_OUT)
    data_dir = args.data_dir or default_data_dir()

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "benchmark": "meta_step",
        "quick": args.quick,
        "machine": machine_info(args.threads),
        "loadavg_start": [round(x, 2) for x in load_before],
        "timing": "median wall seconds per training iteration (train_step only, after warm-up)",
        "settings": {},
    }
    for setting in QUICK_SETTINGS if args.quick else SETTINGS:
        print(f"{setting.name} ...", flush=True)
        results["settings"][setting.name] = run_setting(setting, data_dir, warmup, repeats)
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"]["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    atomic_write_json(out, results)
    print_table(results)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
