"""Images/s of augmented CIFAR training batches: ours (batch ops on the device) vs research code.

- ours: `TensorBatches` from `dnet_tune.data.loader`, the uint8 train split on `--device`, every
  op applied to whole batches there (`dnet_tune.data.augment`), randomness from a
  `torch.Generator`, output normalised float batches on the device;
- baseline: what the Difficulty-Net/CIFAR-LT research codes run: a torchvision `DataLoader` over a
  Dataset that makes a PIL image per item (as `torchvision.datasets.CIFAR10` does) and applies
  RandomCrop(32, padding=4), RandomHorizontalFlip, [AutoAugment(CIFAR10)], ToTensor, Normalize,
  [Cutout(16)], with `num_workers` 0 and 2; batches are moved to `--device` (pinned memory on CUDA).

Recipes: `crop_flip`, and `aa_cutout` = crop+flip+AutoAugment+Cutout (the CIFAR recipe); ours also
`autoaugment` (no Cutout). Ours runs each recipe twice: per batch (`data.augment_span: batch`) and
as one pass over the whole epoch, sliced into batches afterwards (`.../epoch`, `data.augment_span:
epoch`; normalisation and the Cutout fill stay per batch). Each case makes full passes over the
real CIFAR-10-LT train split (IF 100, the project's loader; random uint8 images of that size if the
files are missing), batch 128, shuffled; a pass includes starting the DataLoader's workers, as
every training epoch does. Cases run in interleaved rounds; the median pass is reported. On CUDA
each pass ends with a synchronisation, so queued kernels are counted.

Run: `python bench/loader.py [--device cuda] [--rounds N] [--quick] [--out PATH]`; the default
output is bench/results/loader_<device type>_spans.json (older results are not overwritten).
`python bench/loader.py --files ...` runs the file-dataset case instead (`bench/loader_files.py`:
generated JPEGs, today's PIL path vs the batch path, equal workers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import REPO, default_data_dir, machine_info  # bench/ is the script's folder
from torch.utils.data import DataLoader, Dataset

from dnet_tune.config import DataConfig
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.cifar import CIFAR10
from dnet_tune.data.loader import TensorBatches
from dnet_tune.data.registry import build_dataset
from dnet_tune.errors import UserError
from dnet_tune.fileio import atomic_write_json

BATCH = 128  # default --batch-size, the CIFAR recipe's
SEED = 0


class Cutout:
    """DeVries & Taylor's Cutout on a normalised CHW tensor: one zeroed square, clipped."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1:]
        cy, cx = int(self.rng.integers(h)), int(self.rng.integers(w))
        y0, y1 = max(cy - self.size // 2, 0), min(cy + self.size // 2, h)
        x0, x1 = max(cx - self.size // 2, 0), min(cx + self.size // 2, w)
        img = img.clone()
        img[:, y0:y1, x0:x1] = 0.0
        return img


class PILDataset(Dataset[tuple[torch.Tensor, int]]):
    """HWC uint8 arrays turned into PIL images per item, as torchvision's CIFAR10 does."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, transform: Any) -> None:
        self.data = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.labels[i]


def baseline_transform(recipe: str, ds: LTDataset) -> Any:
    import torchvision.transforms as T

    ops: list[Any] = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    if recipe == "aa_cutout":
        ops.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10))
    ops += [T.ToTensor(), T.Normalize(ds.mean, ds.std)]
    if recipe == "aa_cutout":
        ops.append(Cutout(16, np.random.default_rng(SEED)))
    return T.Compose(ops)


def load_cifar(data_dir: str | None) -> tuple[LTDataset, str]:
    cfg = DataConfig(name="cifar10_lt", data_dir=data_dir, imbalance=100.0, meta_per_class=25,
                     val_per_class=25)
    try:
        return build_dataset(cfg), f"real CIFAR-10-LT (IF 100) train split from {data_dir}"
    except UserError as exc:
        print(f"real CIFAR-10 not usable ({exc}); using random uint8 images", flush=True)
    n = 12_406 - 500  # the IF-100 train size with 25 + 25 images per class carved first
    gen = torch.Generator().manual_seed(SEED)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    split = Split(labels=np.arange(n, dtype=np.int64) % 10, images=images)
    ds = LTDataset(name="cifar10_lt", num_classes=10, train=split, meta=split, val=split,
                   test=split, mean=CIFAR10.mean, std=CIFAR10.std, image_size=32)
    return ds, "synthetic (random uint8 images)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Case:
    def __init__(self, name: str, recipe: str, impl: str, workers: int | None = None,
                 span: str = "batch") -> None:
        self.name, self.recipe, self.impl, self.workers = name, recipe, impl, workers
        self.span = span
        self.samples: list[float] = []
        self.images = 0

    def setup(self, ds: LTDataset, device: torch.device, limit: int, batch: int) -> None:
        self.device, self.batch = device, batch
        split = ds.train
        if limit < len(split):
            assert split.images is not None
            split = Split(labels=split.labels[:limit], images=split.images[:limit])
        self.n = len(split)
        if self.impl == "ours":
            augment = {"aa_cutout": "autoaugment_cutout"}.get(self.recipe, self.recipe)
            self.batches = TensorBatches(split, ds, batch, shuffle=True, augment=augment,
                                         device=device, span=self.span)
        else:
            assert split.images is not None
            self.dataset = PILDataset(split.images, split.labels,
                                      baseline_transform(self.recipe, ds))

    def one_pass(self, epoch: int, max_batches: int | None = None) -> float:
        t0 = time.perf_counter()
        if self.impl == "ours":
            gen = torch.Generator().manual_seed(SEED * 1000 + epoch)
            batches = (x for x, _ in self.batches.epoch(gen))
        else:
            loader = DataLoader(self.dataset, batch_size=self.batch, shuffle=True,
                                num_workers=self.workers or 0,
                                pin_memory=self.device.type == "cuda")
            batches = (x.to(self.device, non_blocking=True) for x, _ in loader)
        for i, x in enumerate(batches):
            last = x
            if max_batches is not None and i + 1 >= max_batches:
                break
        sync(self.device)
        assert last.device.type == self.device.type and last.dtype == torch.float32
        return time.perf_counter() - t0


CASES = (
    ("ours/crop_flip", "crop_flip", "ours", None),
    ("ours/autoaugment", "autoaugment", "ours", None),
    ("ours/aa_cutout", "aa_cutout", "ours", None),
    ("ours/crop_flip/epoch", "crop_flip", "ours", None, "epoch"),
    ("ours/autoaugment/epoch", "autoaugment", "ours", None, "epoch"),
    ("ours/aa_cutout/epoch", "aa_cutout", "ours", None, "epoch"),
    ("torchvision/crop_flip/w0", "crop_flip", "torchvision", 0),
    ("torchvision/crop_flip/w2", "crop_flip", "torchvision", 2),
    ("torchvision/aa_cutout/w0", "aa_cutout", "torchvision", 0),
    ("torchvision/aa_cutout/w2", "aa_cutout", "torchvision", 2),
)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if "--files" in args_in:
        import loader_files

        return loader_files.main([a for a in args_in if a != "--files"])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--rounds", type=int, default=None, help="timed passes per case (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--batch-size", type=int, default=BATCH, help=f"default {BATCH}")
    p.add_argument("--quick", action="store_true", help="smoke run: 1024 images, 1 round")
    p.add_argument("--data-dir", default=None,
                   help="CIFAR data dir (default $DNET_DATA_DIR, else ../shared/data)")
    p.add_argument("--out", default=None,
                   help="JSON output (default bench/results/loader_<device type>.json)")
    p.add_argument("--files", action="store_true", help="the file-dataset case (loader_files.py)")
    args = p.parse_args(args_in)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA GPU is visible")
    rounds = args.rounds or (1 if args.quick else 3)
    suffix = "_quick" if args.quick else ""
    out = Path(args.out) if args.out else (
        REPO / "bench" / "results" / f"loader_{device.type}_spans{suffix}.json")
    torch.set_num_threads(args.threads)

    ds, source = load_cifar(args.data_dir or default_data_dir())
    limit = 1024 if args.quick else len(ds.train)
    cases = [Case(*c) for c in CASES]
    for c in cases:
        c.setup(ds, device, limit, args.batch_size)
        c.one_pass(-1, max_batches=4)  # warm-up: caches, CUDA context and kernels
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    for r in range(rounds):
        for c in cases[r % len(cases):] + cases[: r % len(cases)]:
            c.samples.append(c.one_pass(r))
            print(f"  round {r}: {c.name:<26} {c.n / c.samples[-1]:>10.0f} images/s", flush=True)

    results: dict[str, Any] = {
        "benchmark": "loader",
        "quick": args.quick,
        "machine": machine_info(str(device), args.threads),
        "data": source,
        "images_per_pass": cases[0].n,
        "batch_size": args.batch_size,
        "rounds": rounds,
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - t_start, 1),
        "timing": "median seconds per full pass (DataLoader start included) -> images/s",
        "cases": {},
    }
    for c in cases:
        med = statistics.median(c.samples)
        results["cases"][c.name] = {
            "recipe": c.recipe, "impl": c.impl, "num_workers": c.workers,
            "span": c.span if c.impl == "ours" else None,
            "median_s": med, "min_s": min(c.samples), "images_per_s": c.n / med,
        }
    speed = {k: v["images_per_s"] for k, v in results["cases"].items()}
    results["speedup"] = {
        recipe: {
            "vs_workers0": speed[f"ours/{recipe}"] / speed[f"torchvision/{recipe}/w0"],
            "vs_workers2": speed[f"ours/{recipe}"] / speed[f"torchvision/{recipe}/w2"],
            "epoch_vs_batch": speed[f"ours/{recipe}/epoch"] / speed[f"ours/{recipe}"],
        }
        for recipe in ("crop_flip", "aa_cutout")
    }
    results["speedup"]["autoaugment"] = {
        "epoch_vs_batch": speed["ours/autoaugment/epoch"] / speed["ours/autoaugment"]}
    atomic_write_json(out, results)
    print(f"\n{source}; {cases[0].n} images per pass, batch {args.batch_size}, {device}")
    for name, v in results["cases"].items():
        print(f"  {name:<26} {v['images_per_s']:>10.0f} images/s")
    for recipe, s in results["speedup"].items():
        if "vs_workers0" in s:
            print(f"  speed-up {recipe:<11} {s['vs_workers0']:6.1f}x vs workers 0, "
                  f"{s['vs_workers2']:6.1f}x vs workers 2")
        print(f"  epoch / batch {recipe:<11} {s['epoch_vs_batch']:6.2f}x")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
