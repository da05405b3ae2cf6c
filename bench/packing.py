"""Trials packed on one GPU: trials per GPU-hour and per-trial slowdown at 1, 2, 4, 8 processes.

Why: a CIFAR-LT trial leaves most of an H100 idle (launch-bound), so N trials as N processes on
one GPU (what a search's `--gpus-per-trial 1/N` does) may finish more trials per hour, plainly
(time-slicing) or under MPS (kernels of different processes overlap). The search's default
`--gpus-per-trial` and the MPS advice in clusters/README.md wait for this measurement.

Each N starts N processes (spawn), each builds a real `Trainer` (seed = its index), trains one
untimed warm-up epoch (cudnn's search, the allocator, graph captures), waits for the others, then
times `--epochs` epochs. Per N it reports each trial's seconds per epoch, the slowdown (mean s/epoch
at N over s/epoch at 1) and trials per GPU-hour for a trial of `--trial-epochs` epochs
(N · 3600 / (s/epoch · trial epochs)), and the gain over one trial at a time. With
`nvidia-cuda-mps-control` on the PATH and a CUDA device it starts the MPS daemon (pipe and log
folders under a temporary folder), measures again, and stops it; otherwise the JSON says why
there are no MPS rows. Written after every N, so a time limit keeps the finished rows.

`--device cpu --smoke` runs digits_lt for one timed epoch at 1 and 2 processes (1 thread each):
the script checked without a GPU; its numbers say nothing about a GPU.

Run: `python bench/packing.py --data-dir DIR [--trials 1 2 4 8] [--epochs 1] [--out PATH]`
     `python bench/packing.py --device cpu --smoke`
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from gpu_throughput import _device_info  # bench/ is the script's folder
from machine import RESULTS, machine_info

from dnet_tune.fileio import atomic_write_json
from dnet_tune.run import resolve_config


def _trainer(args: argparse.Namespace, seed: int) -> Any:
    from dnet_tune.train import Trainer

    sets = [f"train.seed={seed}", f"train.epochs={args.epochs + 1}",
            "optim.warmup_epochs=0", *args.set]  # 1 + E epochs cannot hold a warm-up
    if args.device == "cpu":
        sets.append("train.threads=1")  # N processes share the cores, as N CPU trials do
    overrides: dict[str, Any] = {"train": {"device": args.device}}
    if args.data_dir:
        overrides["data"] = {"data_dir": args.data_dir}
    cfg = resolve_config(dataset=args.dataset, sets=sets, overrides=overrides)
    return Trainer(cfg)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _worker(args: argparse.Namespace, seed: int, ready: Any, go: Any, result: Any) -> None:
    trainer = _trainer(args, seed)
    trainer.run_epoch()  # warm-up
    _sync()
    ready.put(seed)
    go.wait()
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        trainer.run_epoch()
    _sync()
    result.put((seed, (time.perf_counter() - t0) / args.epochs,
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


def measure(args: argparse.Namespace, n: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, go, result = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(args, s, ready, go, result), daemon=True)
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
    per_epoch = [g[1] for g in sorted(got)]
    return {"trials": n, "wall_s": round(wall, 3), "s_per_epoch": per_epoch,
            "mean_s_per_epoch": statistics.mean(per_epoch),
            "peak_gpu_mem_gib_per_trial": max(g[2] for g in got)}


def summarise(rows: list[dict[str, Any]], trial_epochs: int) -> None:
    """Slowdown and trials per GPU-hour, relative to the first row (N = 1 when asked)."""
    one = rows[0]["mean_s_per_epoch"]  # s/epoch of the first N
    base = rows[0]["trials"] * 3600 / (rows[0]["mean_s_per_epoch"] * trial_epochs)
    for r in rows:
        r["slowdown"] = r["mean_s_per_epoch"] / one
        r["trials_per_gpu_hour"] = r["trials"] * 3600 / (r["mean_s_per_epoch"] * trial_epochs)
        r["gain_vs_first"] = r["trials_per_gpu_hour"] / base


def mps_daemon(tmp: Path) -> tuple[dict[str, str] | None, str]:
    """Start the MPS control daemon; its environment for the workers, or why not."""
    exe = shutil.which("nvidia-cuda-mps-control")
    if exe is None:
        return None, "nvidia-cuda-mps-control is not on the PATH"
    if not torch.cuda.is_available():
        return None, "no CUDA device"
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(tmp / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(tmp / "log")}
    for d in env.values():
        Path(d).mkdir(parents=True, exist_ok=True)
    started = subprocess.run([exe, "-d"], env={**os.environ, **env}, capture_output=True,
                             text=True, check=False)
    if started.returncode != 0:
        return None, f"the MPS daemon did not start: {started.stderr.strip() or started.stdout}"
    return env, ""


def run_setting(args: argparse.Namespace, label: str, out: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = []
    out[label] = rows
    for n in args.trials:
        rows.append(measure(args, n))
        summarise(rows, args.trial_epochs)
        r = rows[-1]
        print(f"{label} {n} trials: {r['mean_s_per_epoch']:.2f} s/epoch each, slowdown "
              f"{r['slowdown']:.2f}x, {r['trials_per_gpu_hour']:.2f} trials/GPU-hour "
              f"({r['gain_vs_first']:.2f}x)", flush=True)
        atomic_write_json(args.out, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dataset", default="cifar10_lt")
    ap.add_argument("--data-dir", default=os.environ.get("DNET_DATA_DIR"))
    ap.add_argument("--trials", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs per trial")
    ap.add_argument("--trial-epochs", type=int, default=200,
                    help="the trial length trials/GPU-hour is counted for")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--mps", choices=["auto", "off"], default="auto",
                    help="auto: also under MPS where nvidia-cuda-mps-control exists")
    ap.add_argument("--smoke", action="store_true",
                    help="digits_lt, 1 timed epoch, 1 and 2 trials: checks the script")
    ap.add_argument("--limit-s", type=float, default=300.0,
                    help="give up on an N whose workers have not answered in this long")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA GPU is visible (use --device cpu --smoke)")
    if args.smoke:
        args.dataset, args.epochs, args.trials = "digits_lt", 1, [1, 2]
    if args.out is None:
        args.out = str(RESULTS / ("packing" + ("_smoke" if args.smoke else "")
                                  + ("_cpu" if args.device == "cpu" else "") + ".json"))
    out: dict[str, Any] = {"benchmark": "packing", "dataset": args.dataset, "sets": args.set,
                           "device": {**_device_info(), "requested": args.device},
                           "timed_epochs": args.epochs, "trial_epochs": args.trial_epochs,
                           "smoke": args.smoke,
                           "machine": machine_info(args.device, 1),
                           "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    run_setting(args, "plain", out)
    if args.mps == "off":
        out["mps_skipped"] = "--mps off"
    else:
        with tempfile.TemporaryDirectory(prefix="dnet-mps-") as tmp:
            env, why = mps_daemon(Path(tmp))
            if env is None:
                out["mps_skipped"] = why
                print(f"no MPS rows: {why}", flush=True)
            else:
                os.environ.update(env)  # the spawned workers inherit it
                try:
                    run_setting(args, "mps", out)
                finally:
                    subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True,
                                   check=False)
                    for k in env:
                        os.environ.pop(k, None)
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
