"""Wall time of real `digits_lt` searches on local Ray: the default budget (what `make demo`
runs: every method, confirmed) and a Difficulty-Net smoke budget with trial-actor reuse on
and off.

Each case is a full `run_search` (Ray start, 16 or 6 trials, Parquet, best config) in a fresh
local Ray; the ratio reuse-off / reuse-on, measured in one run of this script, is the number to
compare across machines. Peak RSS of the driver process is recorded too (Ray's worker processes
are not included).

Run: `python bench/search.py [--out bench/results/search.json] [--repeats N]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from machine import machine_info, search_scratch  # bench/ is the script's folder
from rich.console import Console

from dnet_tune.tune.plan import SearchRequest
from dnet_tune.tune.search import run_search

CASES: dict[str, dict[str, Any]] = {
    # what `make demo` runs: the space file's default budget, 1 CPU per trial
    "demo_default": {"smoke": False},
    "smoke6_reuse": {"smoke": True, "trials": 6, "methods": ["difficulty_net"], "confirm": False,
                     "reuse_actors": True},
    "smoke6_no_reuse": {"smoke": True, "trials": 6, "methods": ["difficulty_net"],
                        "confirm": False, "reuse_actors": False},
}


def run_case(name: str, spec: dict[str, Any], root: Path) -> dict[str, Any]:
    req = SearchRequest(dataset="digits_lt", gpus=0, storage=str(root), name=name, seed=0, **spec)
    start = time.perf_counter()
    outcome = run_search(req, Console(quiet=True))
    wall = time.perf_counter() - start
    statuses = [r["status"] for r in outcome.summary]
    return {"wall_s": wall, "trials": len(statuses), "stopped_by_asha": statuses.count("stopped"),
            "best_val_mean": outcome.best["val_mean"] if outcome.best else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/search.json")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in CASES}
    with search_scratch() as tmp:
        for i in range(args.repeats):
            for name, spec in CASES.items():
                res = run_case(f"{name}-{i}", spec, Path(tmp) / "results")
                rounds[name].append(res)
                print(f"{name} round {i}: {res['wall_s']:.1f} s", file=sys.stderr)
    summary = {k: {"median_wall_s": statistics.median(r["wall_s"] for r in v), "rounds": v}
               for k, v in rounds.items()}
    on, off = summary["smoke6_reuse"], summary["smoke6_no_reuse"]
    out = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "cases": summary,
        "ratio_no_reuse_over_reuse": off["median_wall_s"] / on["median_wall_s"],
        "driver_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: round(v["median_wall_s"], 1) for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
