"""GPU throughput of a real CIFAR-LT trial, run epoch by epoch (packing N trials on one GPU is
bench/packing.py's).

On a real `Trainer` built from the dataset recipe (Difficulty-Net, the recipe's augmentation on
the device, meta step every iteration), `--mode run` (the only mode) trains one trial for
`--epochs` epochs (the recipe's 200 by default; with `--recipe paper` the authors' stage 1 and
stage 2, 200 + 50 epochs); after every epoch it appends to a JSON file the epoch's seconds,
training images/s, peak GPU memory and the metrics, so a run cut off by a time limit still
leaves everything it did. A checkpoint lets a second call continue (`--resume`).

Run: `python bench/gpu_throughput.py --mode run --epochs 200 --out run.json --ckpt run.pt`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from dnet_tune.config import total_epochs
from dnet_tune.fileio import atomic_write_json
from dnet_tune.run import resolve_config
from dnet_tune.shot_groups import SHOT_GROUPS


def _trainer(args: argparse.Namespace, seed: int) -> Any:
    from dnet_tune.train import Trainer

    sets = [f"train.seed={seed}", *args.set]
    if args.epochs is not None:
        sets.append(f"train.epochs={args.epochs}")
    if args.mode == "pack":  # throughput only: 1-epoch runs cannot hold the recipe's warm-up
        sets.append("optim.warmup_epochs=0")
    cfg = resolve_config(dataset=args.dataset, recipe=args.recipe, sets=sets,
                         overrides={"data": {"data_dir": args.data_dir},
                                    "train": {"device": args.device}})
    return Trainer(cfg)


def _device_info() -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_mode(args: argparse.Namespace) -> None:
    from dnet_tune.train import load_checkpoint, save_checkpoint

    trainer = _trainer(args, 0)
    if args.resume and args.ckpt and Path(args.ckpt).is_file():
        trainer.load_state_dict(load_checkpoint(args.ckpt))
    out = Path(args.out)
    log: dict[str, Any] = json.loads(out.read_text()) if args.resume and out.is_file() else {
        "mode": "run", "dataset": args.dataset, "recipe": args.recipe, "sets": args.set,
        "device": _device_info(), "train_images": len(trainer.ds.train), "epochs": []}
    n = len(trainer.ds.train)
    while trainer.epoch < total_epochs(trainer.cfg):  # stage 1, then stage 2 when enabled
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        m = trainer.run_epoch()
        mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        keys = ("epoch", "stage", "lr", "train_loss", "val_acc", "test_acc",
                *(f"test_{g}" for g in SHOT_GROUPS), "epoch_time_s")
        log["epochs"].append({k: m.get(k) for k in keys}
                             | {"train_images_per_s": n / m["epoch_time_s"],
                                "peak_gpu_mem_gib": mem})
        log["best"] = {k: v for k, v in (trainer.best or {}).items() if not isinstance(v, list)}
        atomic_write_json(out, log)
        if args.ckpt:
            save_checkpoint(trainer, args.ckpt)
        v = m.get("val_acc")
        val = "-" if v is None or v != v else f"{v:.4f}"  # the paper profile has no V (nan)
        print(f"epoch {m['epoch']} (stage {m.get('stage', 1)}): {m['epoch_time_s']:.2f}s "
              f"val {val} test {m['test_acc']:.4f}", flush=True)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["run"], default="run")
    ap.add_argument("--dataset", default="cifar10_lt")
    ap.add_argument("--data-dir", default=os.environ.get("DNET_DATA_DIR", "../shared/data"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, help="stage-1 epochs (default: the recipe's)")
    ap.add_argument("--recipe", help="a recipes/ layer, e.g. paper (stage 1 + stage 2)")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ckpt")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    run_mode(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
