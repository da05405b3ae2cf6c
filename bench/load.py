"""The search driver under load: many short digits_lt trials on local Ray.

Runs `run_search` in-process (`--methods ce --trials N --max-epochs 2`, no confirmation) with
trial-actor reuse on and off, in a fresh local Ray each, and records for each case:
- the driver's RSS over time, sampled from /proc/self/status (VmRSS) in a thread, with the
  number of trials ended at each sample, so growth per trial can be read off (ray#64231: the
  driver keeps every Trial object; the records and the Optuna study grow too);
- wall time per trial (the search's wall time / N, and the median gap between trial ends);
- what the reliability work costs the driver: the live table writes (count, total, slowest)
  and the waits for Tune's experiment snapshot at trial ends.
Ray's worker processes are not in the RSS: only the driver's.

Run: `python bench/load.py [--trials 200] [--out bench/results/load.json]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from machine import machine_info, search_scratch  # bench/ is the script's folder
from rich.console import Console

from dnet_tune.tune import per_method
from dnet_tune.tune.faults import live_results
from dnet_tune.tune.plan import SearchRequest
from dnet_tune.tune.search import run_search


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Probe:
    """Samples the driver's RSS and times the live-table writes and snapshot waits."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.samples: list[tuple[float, float, int]] = []  # (s since start, MiB, trials ended)
        self.ends: list[float] = []
        self.writes: list[float] = []
        self.waits: list[float] = []
        self.stop = threading.Event()
        self.start = time.perf_counter()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.perf_counter() - self.start, rss_mib(), len(self.ends)))
            self.stop.wait(self.every_s)

    def timed(self, into: list[float], fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                into.append(time.perf_counter() - t)
        return wrapper


def run_case(name: str, trials: int, reuse: bool, root: Path) -> dict[str, Any]:
    probe = Probe(every_s=0.5)
    originals = (live_results.write_tables, per_method.PerMethodScheduler.wait_for_snapshot,
                 live_results.LiveTables.on_trial_complete)
    live_results.write_tables = probe.timed(probe.writes, originals[0])  # type: ignore[assignment]
    per_method.PerMethodScheduler.wait_for_snapshot = probe.timed(  # type: ignore[method-assign]
        probe.waits, originals[1])

    def on_end(self: Any, *args: Any, **kwargs: Any) -> None:
        probe.ends.append(time.perf_counter() - probe.start)
        originals[2](self, *args, **kwargs)

    live_results.LiveTables.on_trial_complete = on_end  # type: ignore[method-assign]
    sampler = threading.Thread(target=probe.run, daemon=True)
    sampler.start()
    req = SearchRequest(dataset="digits_lt", methods=["ce"], gpus=0, trials=trials,
                        max_epochs=2, grace_period=1, confirm=False, storage=str(root),
                        name=name, seed=0, reuse_actors=reuse)
    try:
        outcome = run_search(req, Console(quiet=True))
    finally:
        wall = time.perf_counter() - probe.start
        probe.stop.set()
        sampler.join()
        (live_results.write_tables, per_method.PerMethodScheduler.wait_for_snapshot,
         live_results.LiveTables.on_trial_complete) = originals  # type: ignore[assignment]
    gaps = [b - a for a, b in zip(probe.ends, probe.ends[1:], strict=False)]
    statuses = [r["status"] for r in outcome.summary]
    peak = max(m for _, m, _ in probe.samples)
    at_first = next((m for _, m, n in probe.samples if n >= 1), peak)
    ended = len(probe.ends)
    return {
        "trials": len(statuses), "reuse_actors": reuse,
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "wall_s": wall, "wall_per_trial_s": wall / max(1, len(statuses)),
        "median_gap_between_trial_ends_s": statistics.median(gaps) if gaps else None,
        "driver_rss_mib": {"peak": peak, "at_first_trial_end": at_first,
                           "growth_per_trial_after_first": (peak - at_first) / max(1, ended - 1)},
        "live_table_writes": {"count": len(probe.writes), "total_s": sum(probe.writes),
                              "max_s": max(probe.writes, default=0.0)},
        "snapshot_waits": {"count": len(probe.waits), "total_s": sum(probe.waits),
                           "max_s": max(probe.waits, default=0.0)},
        "rss_series": [(round(t, 1), round(m, 1), n) for t, m, n in probe.samples[::4]],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--out", default="bench/results/load.json")
    ap.add_argument("--cases", default="reuse,no_reuse")
    args = ap.parse_args()
    cases = {}
    with search_scratch() as tmp:
        for case in args.cases.split(","):
            res = run_case(case, args.trials, case == "reuse", Path(tmp) / "results")
            cases[case] = res
            print(f"{case}: {res['wall_s']:.0f} s, peak RSS {res['driver_rss_mib']['peak']:.0f} "
                  f"MiB, {res['statuses']}", file=sys.stderr)
    out = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {**machine_info(), "load_average_at_end": os.getloadavg()},
        "request": {"dataset": "digits_lt", "methods": ["ce"], "trials": args.trials,
                    "max_epochs": 2, "grace_period": 1, "confirm": False},
        "cases": cases,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
