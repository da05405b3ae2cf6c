"""Images/s of augmented file-dataset batches: today's PIL path vs the batch path, equal workers.

- today: what `FileBatches` did before: a fresh DataLoader per epoch (workers started every
  epoch), each item opened with PIL and augmented with torchvision's RandomResizedCrop(224),
  RandomHorizontalFlip, ColorJitter(0.4, 0.4, 0.4), ToTensor, Normalize (`loader.file_transform`
  under the item's seed, `loader._FileDataset`), float32 batches sent to the main process;
- pil-persistent: the same PIL items with workers kept across epochs (`PILFileBatches`, what
  data.augment=autoaugment now uses), to separate the two changes;
- ours: `file_batches.FileBatches`: torchvision.io decode + batch ops, workers kept across
  epochs; on `--device cuda` the JPEGs are decoded on the GPU.

Data: `--images` random-content JPEGs of ImageNet-like size (~400×350, quality 90: smooth random
fields plus noise, so they compress like photographs rather than like pure noise), written to a
temp dir. Each case makes `--rounds` full passes (batch 64, shuffled, crop_flip) interleaved with
the other cases; the median pass is reported. Passes include the DataLoader start of that epoch.

Run: `python bench/loader_files.py [--device cuda] [--workers 0 2] [--rounds N] [--out PATH]`,
or `python bench/loader.py --files ...` (same options).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import REPO, machine_info  # bench/ is the script's folder

from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.file_batches import FileBatches
from dnet_tune.data.loader import PILFileBatches
from dnet_tune.fileio import atomic_write_json

SEED = 0
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_jpegs(root: Path, n: int, seed: int = SEED) -> list[str]:
    """`n` JPEGs of 320-480 × 280-420 px: a bilinear-upsampled 12×12 colour field plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        w, h = int(rng.integers(320, 481)), int(rng.integers(280, 421))
        field = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        base = np.asarray(field.resize((w, h), Image.Resampling.BILINEAR), dtype=np.int16)
        noise = rng.integers(-20, 21, (h, w, 3), dtype=np.int16)
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        path = root / f"img_{k:04d}.jpg"
        img.save(path, quality=90)
        paths.append(str(path))
    return paths


def dataset(paths: list[str]) -> LTDataset:
    split = Split(labels=np.arange(len(paths), dtype=np.int64) % 10, paths=paths)
    return LTDataset(name="bench_jpegs", num_classes=10, train=split, meta=split, val=split,
                     test=split, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=224)


class Case:
    def __init__(self, impl: str, workers: int, ds: LTDataset, device: torch.device,
                 batch: int) -> None:
        self.impl, self.workers, self.ds, self.device, self.batch = impl, workers, ds, device, batch
        self.name = f"{impl}/w{workers}"
        self.samples: list[float] = []
        self.kept = self._make() if impl != "today" else None

    def _make(self) -> FileBatches | PILFileBatches:
        cls = FileBatches if self.impl == "ours" else PILFileBatches
        return cls(self.ds.train, self.ds, self.batch, shuffle=True, augment="crop_flip",
                   device=self.device, num_workers=self.workers)

    def one_pass(self, epoch: int) -> float:
        t0 = time.perf_counter()
        batches = self.kept or self._make()  # today: a new DataLoader (new workers) per epoch
        gen = torch.Generator().manual_seed(SEED * 1000 + epoch)
        for x, _ in batches.epoch(gen):
            last = x
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        assert last.dtype == torch.float32 and last.device.type == self.device.type
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--images", type=int, default=320, help="JPEG files to write (default 320)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="default: 0 2")
    p.add_argument("--rounds", type=int, default=3, help="timed passes per case (default 3)")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--out", default=None,
                   help="JSON output (default bench/results/loader_files_<device type>.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA GPU is visible")
    out = Path(args.out) if args.out else (
        REPO / "bench" / "results" / f"loader_files_{device.type}.json")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_jpegs_") as tmp:
        paths = write_jpegs(Path(tmp), args.images)
        mb = sum(os.path.getsize(q) for q in paths) / 2**20
        ds = dataset(paths)
        cases = [Case(impl, w, ds, device, args.batch_size)
                 for w in args.workers for impl in ("today", "pil-persistent", "ours")]
        for c in cases:
            c.one_pass(-1)  # warm-up: page cache, kernels, (persistent) workers started
        load_start = os.getloadavg()
        t_start = time.perf_counter()
        for r in range(args.rounds):
            for c in cases[r % len(cases):] + cases[: r % len(cases)]:
                c.samples.append(c.one_pass(r))
                print(f"  round {r}: {c.name:<22} {len(paths) / c.samples[-1]:>8.0f} images/s",
                      flush=True)
    speed = {c.name: len(paths) / statistics.median(c.samples) for c in cases}
    results: dict[str, Any] = {
        "benchmark": "loader_files",
        "machine": machine_info(str(device), args.threads),
        "data": f"{len(paths)} random-content JPEGs, 320-480 x 280-420 px, quality 90, "
                f"{mb:.1f} MiB",
        "recipe": "crop_flip: RandomResizedCrop(224) + h-flip + ColorJitter(0.4, 0.4, 0.4)",
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - t_start, 1),
        "timing": "median seconds per full pass (DataLoader start included) -> images/s",
        "cases": {c.name: {"impl": c.impl, "num_workers": c.workers,
                           "median_s": statistics.median(c.samples), "min_s": min(c.samples),
                           "images_per_s": speed[c.name]} for c in cases},
        "speedup_vs_today": {c.name: speed[c.name] / speed[f"today/w{c.workers}"]
                             for c in cases},
    }
    atomic_write_json(out, results)
    print(f"\n{results['data']}; batch {args.batch_size}, {device}")
    for c in cases:
        print(f"  {c.name:<22} {speed[c.name]:>8.0f} images/s  "
              f"{results['speedup_vs_today'][c.name]:5.2f}x today")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
