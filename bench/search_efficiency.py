"""What the search algorithm buys: ASHA + TPE against random search given 4x the compute, and the
driver's overhead over the trials' own compute.

`asha-vs-random` (digits_lt, Difficulty-Net, the space file's default budget), per seed of the
search:
- ASHA + TPE: the default search; its compute C is the epochs its trials trained;
- random search: Optuna's RandomSampler, no early stopping (`--sampler random --scheduler none`),
  ceil(4C / max_epochs) trials, i.e. at least 4x the compute.
One trial runs at a time (`--cpus-per-trial 2` on 2 CPUs), so start order is the order in which
results arrive and "compute so far" is exact: the epochs of every earlier trial plus this
trial's epochs up to now. From each search's curve of best val_acc against compute: the compute
each needs to reach the val both reach (the lower of the two final bests), and whether random
search reaches ASHA + TPE's best at all. Compute is counted in trial epochs (every trial trains
the same model on the same data; the seconds are recorded too).

`overhead`: 16 Difficulty-Net trials whose epochs last >= 2 s (ResNet-32, batch 16, a meta step
every iteration), 2 slots of 1 CPU; overhead = wall / (sum of trial seconds / slots), with the
search's whole wall time (Ray start to the last table written); the time a bare local Ray takes
to start and stop is measured beside it, as the fixed part of that overhead.

Run: `python bench/search_efficiency.py [asha-vs-random|overhead|all] [--seeds 5]`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from machine import RESULTS, machine_info, search_scratch  # bench/ is the script's folder
from rich.console import Console

from dnet_tune.fileio import atomic_write_json
from dnet_tune.tune.plan import SearchRequest
from dnet_tune.tune.search import run_search
from dnet_tune.tune.space import default_space_path
from dnet_tune.tune.space_file import load_space
from dnet_tune.tune.storage import read_table

DATASET, METHOD = "digits_lt", "difficulty_net"
# epochs >= 2 s on one thread of this machine: a bigger model, small batches, meta step each step
SLOW_TRIALS = ["model.name=resnet32", "data.batch_size=16", "method.meta_grad=full",
               "method.meta_interval=1"]


def search(root: Path, name: str, **kw: Any) -> tuple[dict[str, Any], float]:
    req = SearchRequest(dataset=DATASET, methods=[METHOD], gpus=0, storage=str(root), name=name,
                        confirm=False, **kw)
    start = time.perf_counter()
    run_search(req, Console(quiet=True))
    wall = time.perf_counter() - start
    exp = root / name
    return {"summary": read_table(str(exp / "summary.parquet")),
            "epochs": read_table(str(exp / "trials.parquet"))}, wall


def curve(tables: dict[str, Any]) -> list[tuple[int, float]]:
    """(compute so far in epochs, best val_acc so far) after every reported epoch, in order."""
    order = {r["trial_id"]: r["trial_index"] for r in tables["summary"]}
    rows = sorted(tables["epochs"], key=lambda r: (order[r["trial_id"]], r["epoch"]))
    out, best = [], -math.inf
    for spent, r in enumerate(rows, start=1):
        best = max(best, float(r["val_acc"]))
        out.append((spent, best))
    return out


# val_acc is a float32 mean of per-class accuracies: the same accuracy can differ in its last
# bits between runs; V's resolution on digits_lt is 1/100 of a class, far above this
SAME = 1e-6


def compute_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    return next((spent for spent, best in points if best >= target - SAME), None)


def best_within(points: list[tuple[int, float]], budget: int) -> float:
    return max((best for spent, best in points if spent <= budget), default=math.nan)


def asha_vs_random(root: Path, seeds: int, factor: float) -> dict[str, Any]:
    budget = load_space(default_space_path(DATASET)).budget
    runs = []
    for seed in range(seeds):
        asha, asha_wall = search(root, f"asha-tpe-s{seed}", seed=seed, cpus_per_trial=2.0)
        a = curve(asha)
        spent = a[-1][0]
        trials = math.ceil(factor * spent / budget.max_epochs)
        rand, rand_wall = search(root, f"random-s{seed}", seed=seed, cpus_per_trial=2.0,
                                 sampler="random", scheduler="none", trials=trials)
        r = curve(rand)
        runs.append({
            "seed": seed,
            "asha_tpe": {"trials": len(asha["summary"]), "epochs": spent,
                         "seconds": sum(x["trial_seconds"] for x in asha["summary"]),
                         "wall_s": asha_wall,
                         "stopped": sum(x["status"] == "stopped" for x in asha["summary"])},
            "random": {"trials": trials, "epochs": r[-1][0],
                       "seconds": sum(x["trial_seconds"] for x in rand["summary"]),
                       "wall_s": rand_wall},
            "curves": {"asha_tpe": a, "random": r},
        })
        print(f"seed {seed}: {summarise_run(runs[-1])}", file=sys.stderr)
    return {"dataset": DATASET, "method": METHOD, "budget": vars(budget),
            "compute_factor": factor, "slots": 1, "runs": runs, **summarise(runs)}


def summarise_run(run: dict[str, Any]) -> str:
    """Adds to `run`, from its two curves alone, what the comparison reads; returns a line."""
    a, r = run["curves"]["asha_tpe"], run["curves"]["random"]
    spent, best_a, best_r = a[-1][0], a[-1][1], r[-1][1]
    target = min(best_a, best_r)  # the val both searches reach
    need_a, need_r = compute_to_reach(a, target), compute_to_reach(r, target)
    run["asha_tpe"]["best_val"], run["random"]["best_val"] = best_a, best_r
    run["random"]["best_val_at_asha_compute"] = best_within(r, spent)
    run.update({"target_val": target, "epochs_to_target": {"asha_tpe": need_a, "random": need_r},
                "random_over_asha": need_r / need_a if need_a and need_r else None,
                "random_reaches_asha_best": compute_to_reach(r, best_a)})
    return (f"ASHA+TPE best {best_a:.3f} in {spent} epochs; random best {best_r:.3f} in "
            f"{r[-1][0]} epochs ({run['random']['best_val_at_asha_compute']:.3f} at {spent}); "
            f"to reach {target:.3f}: {need_a} vs {need_r} epochs")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Over seeds, from runs that `summarise_run` has filled in."""
    ratios = [x["random_over_asha"] for x in runs if x["random_over_asha"] is not None]
    a = [x["asha_tpe"]["best_val"] for x in runs]
    r = [x["random"]["best_val"] for x in runs]
    r1 = [x["random"]["best_val_at_asha_compute"] for x in runs]
    return {
        "random_over_asha": {"median": statistics.median(ratios) if ratios else None,
                             "min": min(ratios, default=None), "max": max(ratios, default=None)},
        "random_reaches_asha_best": sum(x["random_reaches_asha_best"] is not None for x in runs),
        # seeds where one search's final best val is higher than the other's (ties: neither)
        "higher_best_val": {"asha_tpe": sum(x > y + SAME for x, y in zip(a, r, strict=True)),
                            "random": sum(y > x + SAME for x, y in zip(a, r, strict=True))},
        "higher_at_equal_compute": {
            "asha_tpe": sum(x > y + SAME for x, y in zip(a, r1, strict=True)),
            "random": sum(y > x + SAME for x, y in zip(a, r1, strict=True))},
    }


def ray_start_stop_s() -> float:
    from dnet_tune.tune.ray_session import connect

    start = time.perf_counter()
    local = connect(None)
    if local is not None:
        local.shutdown()
    return time.perf_counter() - start


def overhead(root: Path, trials: int, max_epochs: int) -> dict[str, Any]:
    tables, wall = search(root, "overhead", seed=0, cpus_per_trial=1.0, trials=trials,
                          max_epochs=max_epochs, sets=SLOW_TRIALS)
    summary, epochs = tables["summary"], tables["epochs"]
    slots = 2
    trial_s = sum(r["trial_seconds"] for r in summary)
    ideal = trial_s / slots
    times = [r["epoch_time_s"] for r in epochs]
    return {
        "dataset": DATASET, "method": METHOD, "sets": SLOW_TRIALS, "trials": len(summary),
        "max_epochs": max_epochs, "slots": slots, "epochs": len(epochs),
        "epoch_s": {"min": min(times), "median": statistics.median(times), "max": max(times)},
        "trial_seconds": trial_s, "wall_s": wall,
        "overhead": wall / ideal,
        "ray_start_stop_s": ray_start_stop_s(),
        "stopped": sum(r["status"] == "stopped" for r in summary),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", default="all", choices=["asha-vs-random", "overhead", "all"])
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the search (asha-vs-random)")
    ap.add_argument("--factor", type=float, default=4.0, help="random search's compute multiple")
    ap.add_argument("--trials", type=int, default=16, help="trials of the overhead search")
    ap.add_argument("--max-epochs", type=int, default=8, help="epochs of an unstopped trial")
    ap.add_argument("--out", default=str(RESULTS / "search_efficiency.json"))
    ap.add_argument("--summarise", action="store_true",
                    help="recompute the comparison from the curves already in --out; no search")
    args = ap.parse_args()
    if args.summarise:
        data = json.loads(Path(args.out).read_text())
        kept = ("machine", "dataset", "method", "budget", "compute_factor", "slots", "runs")
        part = {k: data["asha_vs_random"][k] for k in kept}
        for run in part["runs"]:
            summarise_run(run)
        part.update(summarise(part["runs"]))
        data["asha_vs_random"] = part
        atomic_write_json(Path(args.out), data)
        print(json.dumps({k: v for k, v in part.items() if k != "runs"}, indent=1))
        return 0
    out: dict[str, Any] = {}
    if Path(args.out).exists():  # one subcommand keeps the other's last results
        out = json.loads(Path(args.out).read_text())
    with search_scratch() as tmp:
        if args.what in ("asha-vs-random", "all"):
            out["asha_vs_random"] = {"machine": machine_info(), **asha_vs_random(
                tmp / "results", args.seeds, args.factor)}
        if args.what in ("overhead", "all"):
            out["overhead"] = {"machine": machine_info(),
                               **overhead(tmp / "results", args.trials, args.max_epochs)}
            o = out["overhead"]
            print(f"overhead: wall {o['wall_s']:.1f} s, trial compute {o['trial_seconds']:.1f} s"
                  f" on {o['slots']} slots -> {o['overhead']:.3f}", file=sys.stderr)
    atomic_write_json(Path(args.out), out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
