"""What the search algorithm buys: each sampler under ASHA against random search given 4x the
compute, and the driver's overhead over the trials' own compute.

`samplers` (digits_lt with a 500-image V, Difficulty-Net, the space file's default budget), per
seed of the search:
- four searches under ASHA, one per way of proposing (`VARIANTS`): `tpe-mv` (multivariate TPE
  over the grouped space, the constant liar, a startup phase scaled to the budget), `tpe` (the
  installed Optuna's TPE defaults: 10 random trials first, no grouping), `tpe-independent`
  (Optuna 4.x's defaults: independent TPE, 10 random trials first) and `random` proposals;
- random search without early stopping (`--sampler random --scheduler none`) with
  ceil(4 C / max_epochs) trials, C the largest compute of the four, i.e. at least 4x each one's.
One trial runs at a time (`--cpus-per-trial 2` on 2 CPUs), so start order is the order in which
results arrive and "compute so far" is exact: the epochs of every earlier trial plus this
trial's epochs up to now. Compute is counted in trial epochs (every trial trains the same model on
the same data; the seconds are recorded too).

Why a 500-image V (`data.val_per_class=50`, the train split shrinks to n_max = 74): with the
recipe's 10 images per class one image is 0.01 of val, coarser than the differences between
searches (issue 20 measured them with it and could not tell). 50 per class makes one image 0.002.
digits_lt, not CIFAR: on this 2-core machine one CIFAR-10-LT epoch of small_cnn takes ~80 s, so
ten seeds of five searches would take days; a digits trial's epoch takes a fraction of a second.

`overhead`: 16 Difficulty-Net trials whose epochs last >= 2 s (ResNet-32, batch 16, a meta step
every iteration), 2 slots of 1 CPU; overhead = wall / (sum of trial seconds / slots), with the
search's whole wall time (Ray start to the last table written); the time a bare local Ray takes
to start and stop is measured beside it, as the fixed part of that overhead.

Run: `python bench/search_efficiency.py [samplers|overhead|all] [--seeds 10]`; `--summarise`
recomputes the comparison from the curves already on file.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
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
# a 500-image V (below), and one intra-op thread: each trial has the machine's 2 CPUs to itself,
# but on a machine that others share two threads ran several times slower than one (their
# barrier waits on a descheduled thread); epochs, the unit of compute here, are unaffected
SETS = ["data.val_per_class=50", "train.threads=1"]
VARIANTS = ("tpe-mv", "tpe", "tpe-independent", "random")  # each under ASHA
RANDOM_4X = "random-4x"  # random proposals, no ASHA, >= 4x the compute
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
# bits between runs; V's resolution (1/500 here) is far above this
SAME = 1e-6


def compute_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    return next((spent for spent, best in points if best >= target - SAME), None)


def best_within(points: list[tuple[int, float]], budget: float) -> float:
    return max((best for spent, best in points if spent <= budget), default=math.nan)


def facts(tables: dict[str, Any], wall: float) -> dict[str, Any]:
    s = tables["summary"]
    return {"trials": len(s), "seconds": sum(x["trial_seconds"] for x in s), "wall_s": wall,
            "stopped": sum(x["status"] == "stopped" for x in s), "curve": curve(tables)}


def compare_samplers(root: Path, seeds: int, factor: float,
                     save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """`save` gets the comparison so far after every seed: a stopped run keeps its seeds."""
    budget = load_space(default_space_path(DATASET)).budget
    runs: list[dict[str, Any]] = []

    def so_far() -> dict[str, Any]:
        return {"dataset": DATASET, "method": METHOD, "sets": SETS, "budget": vars(budget),
                "compute_factor": factor, "slots": 1, "variants": list(VARIANTS),
                "seeds_asked": seeds, "runs": runs, **summarise(runs)}

    for seed in range(seeds):
        run: dict[str, Any] = {"seed": seed}
        for v in VARIANTS:
            run[v] = facts(*search(root, f"{v}-s{seed}", seed=seed, cpus_per_trial=2.0,
                                   sampler=v, sets=SETS))
        most = max(run[v]["curve"][-1][0] for v in VARIANTS)
        trials = math.ceil(factor * most / budget.max_epochs)
        run[RANDOM_4X] = facts(*search(root, f"{RANDOM_4X}-s{seed}", seed=seed,
                                       cpus_per_trial=2.0, sampler="random", scheduler="none",
                                       trials=trials, sets=SETS))
        runs.append(run)
        print(f"seed {seed}: {summarise_run(run, factor)}", file=sys.stderr, flush=True)
        save(so_far())
    return so_far()


def summarise_run(run: dict[str, Any], factor: float) -> str:
    """Adds to `run`, from its curves alone, what the comparison reads; returns a line."""
    r = run[RANDOM_4X]["curve"]
    finals = [run[v]["curve"][-1][1] for v in (*VARIANTS, RANDOM_4X)]
    target = min(finals)  # the val every search reaches
    run["target_val"] = target
    run[RANDOM_4X]["best_val"] = r[-1][1]
    run[RANDOM_4X]["epochs"] = r[-1][0]
    run[RANDOM_4X]["epochs_to_target"] = compute_to_reach(r, target)
    parts = []
    for v in VARIANTS:
        c = run[v]["curve"]
        spent, best = c[-1]
        run[v].update({
            "epochs": spent, "best_val": best,
            "epochs_to_target": compute_to_reach(c, target),
            "random_at_equal_compute": best_within(r, spent),
            "random_at_4x_compute": best_within(r, factor * spent),
        })
        parts.append(f"{v} {best:.3f}/{spent}ep")
    return (f"{', '.join(parts)}; random-4x {r[-1][1]:.3f}/{r[-1][0]}ep; target {target:.3f}")


def spread(xs: list[float]) -> dict[str, float | None]:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return {"median": None, "min": None, "max": None, "mean": None}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
            "mean": statistics.fmean(xs)}


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """a − b over seeds: mean with a 95% t interval, and wins / ties / losses of a."""
    from scipy import stats

    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(d)
    half = (stats.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
            if len(d) > 1 else math.nan)
    return {"mean": mean, "ci95": [mean - half, mean + half],
            "wins": sum(x > SAME for x in d), "ties": sum(abs(x) <= SAME for x in d),
            "losses": sum(x < -SAME for x in d)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Over seeds, from runs that `summarise_run` has filled in."""
    per: dict[str, Any] = {}
    for v in VARIANTS:
        rs = [x[v] for x in runs]
        per[v] = {
            "best_val": spread([x["best_val"] for x in rs]),
            "epochs": spread([x["epochs"] for x in rs]),
            "epochs_to_target": spread([x["epochs_to_target"] for x in rs]),
            "reached_target": sum(x["epochs_to_target"] is not None for x in rs),
            # goal 1: at equal compute, at least random search's (no ASHA) best
            "geq_random_at_equal_compute": sum(
                x["best_val"] >= x["random_at_equal_compute"] - SAME for x in rs),
            # goal 2: within its own budget, the best random search reaches with 4x
            "reaches_random_4x": sum(x["best_val"] >= x["random_at_4x_compute"] - SAME
                                     for x in rs),
        }
    r4 = [x[RANDOM_4X] for x in runs]
    per[RANDOM_4X] = {"best_val": spread([x["best_val"] for x in r4]),
                      "epochs": spread([x["epochs"] for x in r4]),
                      "epochs_to_target": spread([x["epochs_to_target"] for x in r4])}
    best = {v: [x[v]["best_val"] for x in runs] for v in VARIANTS}
    return {"seeds": len(runs), "per_variant": per,
            "paired_best_val": {f"{a} - {b}": paired(best[a], best[b]) for a, b in (
                ("tpe-mv", "tpe-independent"), ("tpe-mv", "tpe"), ("tpe-mv", "random"),
                ("tpe", "tpe-independent"))}}


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


def resummarise(path: Path) -> int:
    data = json.loads(path.read_text())
    kept = ("machine", "dataset", "method", "sets", "budget", "compute_factor", "slots",
            "variants", "seeds_asked", "runs")
    part = {k: data["samplers"][k] for k in kept}
    for run in part["runs"]:
        summarise_run(run, part["compute_factor"])
    part.update(summarise(part["runs"]))
    data["samplers"] = part
    atomic_write_json(path, data)
    print(json.dumps({k: v for k, v in part.items() if k != "runs"}, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", default="all", choices=["samplers", "overhead", "all"])
    ap.add_argument("--seeds", type=int, default=10, help="seeds of each search (samplers)")
    ap.add_argument("--factor", type=float, default=4.0, help="random search's compute multiple")
    ap.add_argument("--trials", type=int, default=16, help="trials of the overhead search")
    ap.add_argument("--max-epochs", type=int, default=8, help="epochs of an unstopped trial")
    ap.add_argument("--out", default=str(RESULTS / "search_efficiency.json"))
    ap.add_argument("--summarise", action="store_true",
                    help="recompute the comparison from the curves already in --out; no search")
    args = ap.parse_args()
    if args.summarise:
        return resummarise(Path(args.out))
    out: dict[str, Any] = {}
    if Path(args.out).exists():  # one subcommand keeps the other's last results
        out = json.loads(Path(args.out).read_text())
    with search_scratch() as tmp:
        if args.what in ("samplers", "all"):
            machine = machine_info()

            def save(part: dict[str, Any]) -> None:
                out["samplers"] = {"machine": machine, **part}
                atomic_write_json(Path(args.out), out)

            compare_samplers(tmp / "results", args.seeds, args.factor, save)
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
