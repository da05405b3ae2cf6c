"""GPU throughput of real CIFAR-LT trials: one long run, and N trials packed on one GPU.

Two modes, both on real `Trainer` objects built from the dataset recipe (Difficulty-Net, the
recipe's augmentation on the device, meta step every iteration):

- `--mode run`: one trial for `--epochs` epochs (the recipe's 200 by default; with `--recipe paper`
  the authors' stage 1 and stage 2, 200 + 50 epochs); after every epoch
  it appends to a JSON file the epoch's seconds, training images/s, peak GPU memory and the
  metrics, so a run cut off by a time limit still leaves everything it did. A checkpoint lets a
  second call continue (`--resume`).
- `--mode pack`: N trials as N processes on the same GPU (what Ray's fractional
  `--gpus-per-trial 1/N` does: time-slicing) for `--epochs` epochs each, after one warm-up epoch;
  total training images/s over all N is the number to compare. Run it once plainly and once with
  the NVIDIA MPS daemon running (then the processes' kernels can overlap).

Run: `python bench/gpu_throughput.py --mode pack --trials 1 2 4 8 --epochs 2 --out pack.json`
     `python bench/gpu_throughput.py --mode run --epochs 200 --out run.json --ckpt run.pt`
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import sys
import time
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


def _pack_worker(args: argparse.Namespace, seed: int, ready: Any, go: Any, result: Any) -> None:
    trainer = _trainer(args, seed)
    trainer.run_epoch()  # warm-up: cudnn autotuning, allocator, first-touch
    _sync()
    ready.put(seed)
    go.wait()  # every worker warmed up: the timed epochs start together
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        trainer.run_epoch()
    _sync()
    result.put((seed, time.perf_counter() - t0, len(trainer.ds.train) * args.epochs,
                torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0))


def _get(procs: list[Any], what: str, answers: Any, limit_s: float) -> Any:
    """The next answer of a worker, waiting in short slices; a dead worker or `limit_s` ends it.

    Without this a worker that fails early leaves this process waiting for ever: a device call
    then burns its whole time limit.
    """
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return answers.get(timeout=5.0)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.terminate()
                why = f"worker exit codes {dead}" if dead else f"no answer in {limit_s:.0f} s"
                raise RuntimeError(f"pack: {what} failed ({why})") from None


def pack_mode(args: argparse.Namespace) -> None:
    ctx = mp.get_context("spawn")
    rows = []
    for n in args.trials:
        ready, go, result = ctx.Queue(), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_pack_worker, args=(args, s, ready, go, result), daemon=True)
                 for s in range(n)]
        for p in procs:
            p.start()
        for _ in procs:
            _get(procs, "start-up", ready, args.limit_s)
        go.set()
        t0 = time.perf_counter()
        got = [_get(procs, "timed epochs", result, args.limit_s) for _ in procs]
        wall = time.perf_counter() - t0
        for p in procs:
            p.join()
        images = sum(g[2] for g in got)
        rows.append({"trials": n, "wall_s": wall, "total_images_per_s": images / wall,
                     "per_trial_images_per_s": [g[2] / g[1] for g in got],
                     "peak_gpu_mem_gib_per_trial": max(g[3] for g in got)})
        print(f"{n} trials: {images / wall:.0f} images/s total ({wall:.1f}s)", flush=True)
        # after every N: a run cut off by a time limit keeps the packings it finished
        atomic_write_json(args.out, {"mode": "pack", "mps": args.mps, "dataset": args.dataset,
                                     "sets": args.set, "epochs": args.epochs,
                                     "device": _device_info(), "rows": rows})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["run", "pack"], required=True)
    ap.add_argument("--dataset", default="cifar10_lt")
    ap.add_argument("--data-dir", default=os.environ.get("DNET_DATA_DIR", "../shared/data"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int,
                    help="stage-1 epochs (run: default the recipe's; pack: timed epochs, "
                         "default 1)")
    ap.add_argument("--recipe", help="a recipes/ layer, e.g. paper (stage 1 + stage 2)")
    ap.add_argument("--trials", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--mps", action="store_true", help="label: the MPS daemon is running")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ckpt")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--limit-s", type=float, default=300.0,
                    help="pack: give up on an N whose workers have not answered in this long")
    args = ap.parse_args()
    if args.mode == "pack" and args.epochs is None:
        args.epochs = 1
    (run_mode if args.mode == "run" else pack_mode)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
