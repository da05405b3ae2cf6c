"""What installing `ray[default]` (our `cluster` extra) costs every local Ray start, measured
to decide whether `make test` may install it for `tests/tune/test_job_submit.py`.

With `ray[default]` installed, Ray starts the same processes but not in their minimal form: the
dashboard head (which `ray.init` waits for, even with `include_dashboard=False`) and the
dashboard agent import aiohttp, OpenCensus, Prometheus and gRPC, and the driver imports them too
to find out whether they are there. This script compares two interpreters, one with and one
without the extra, on the start the tests do (`ray.init(num_cpus=2, include_dashboard=False,
log_to_driver=False)` as `tests/conftest.py`'s `ray_local`), one fresh process per start, the
two alternated so that both share the machine's load.

Per start: wall time of `ray.init`, of one trivial task and of `ray.shutdown`; the CPU seconds of
every process Ray started (found as descendants of the child, by process name) up to the
shutdown; their RSS and PSS summed after the task. Medians are printed; the JSON keeps every run.

Run: `python bench/ray_default.py --with PYTHON --without PYTHON [--runs N] [--out PATH]`, e.g.
with a second venv made by `pip install -e '.[dev,cluster]'`; the two only need Ray (the starts
import nothing of ours), the script itself bench/machine.py's imports.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from machine import machine_info  # bench/ is the script's folder

# One start, in a fresh interpreter; prints one JSON line. Kept as source so that each venv
# runs it with its own Ray.
CHILD = r'''
import json, os, sys, tempfile, time

TICK = os.sysconf("SC_CLK_TCK")
me = os.getpid()


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def descendants():
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(stat(d)[1])
            except (OSError, IndexError, ValueError):
                pass
    mine, grew = {me}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in mine and p not in mine}
        mine |= new
        grew = bool(new)
    mine.discard(me)
    return sorted(mine)


def name(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    if argv and argv[0].endswith("python") and len(argv) > 1:
        argv = [a for a in argv[1:] if not a.startswith("-")] or argv
    return argv[0].rsplit("/", 1)[-1].strip() if argv else "?"


def cpu(pid):
    f = stat(pid)
    return (int(f[11]) + int(f[12])) / TICK


def memory(pid):
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss / 1024, pss / 1024


t0 = time.perf_counter()
import ray  # noqa: E402

t1 = time.perf_counter()
temp = tempfile.mkdtemp(prefix="rd", dir=sys.argv[1])
ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False, log_to_driver=False)
t2 = time.perf_counter()
ray.get(ray.remote(lambda: 1).remote())
t3 = time.perf_counter()
cpu_by, rss, pss = {"driver": cpu(me)}, 0.0, 0.0
for pid in descendants():
    try:
        key = name(pid)
        cpu_by[key] = cpu_by.get(key, 0.0) + cpu(pid)
        r, p = memory(pid)
        rss, pss = rss + r, pss + p
    except OSError:
        pass  # ended meanwhile
ray.shutdown()
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "init_s": t2 - t1, "task_s": t3 - t2,
                  "shutdown_s": t4 - t3, "start_stop_s": t4 - t1, "cpu_s": sum(cpu_by.values()),
                  "cpu_by": cpu_by, "rss_mb": rss, "pss_mb": pss, "procs": len(cpu_by) - 1,
                  "load1": os.getloadavg()[0]}))
'''

KEYS = ("init_s", "start_stop_s", "cpu_s", "rss_mb", "pss_mb", "load1")


def one(python: str, scratch: Path) -> dict[str, Any]:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    res = subprocess.run([python, "-c", CHILD, str(scratch)], env=env, capture_output=True,
                         text=True, timeout=300)
    if res.returncode != 0:
        raise SystemExit(f"{python} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--with", dest="with_", required=True, help="python with ray[default]")
    ap.add_argument("--without", required=True, help="python with ray[tune] only")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scratch", default="/tmp", help="where each Ray's session files go")
    ap.add_argument("--out", default="bench/results/ray_default.json")
    args = ap.parse_args()

    runs: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
    for i in range(args.runs):
        # alternate which goes first, so neither always follows the other's shutdown
        order = ["with", "without"] if i % 2 == 0 else ["without", "with"]
        for case in order:
            runs[case].append(one(args.with_ if case == "with" else args.without,
                                  Path(args.scratch)))
    medians = {case: {k: statistics.median(r[k] for r in rs) for k in KEYS}
               for case, rs in runs.items()}
    for case, m in medians.items():
        by = runs[case]
        names = sorted({n for r in by for n in r["cpu_by"]})
        m["cpu_by"] = {n: statistics.median(r["cpu_by"].get(n, 0.0) for r in by) for n in names}
        print(f"{case:8s} " + "  ".join(f"{k} {m[k]:.2f}" for k in KEYS))
        print("         cpu by process: " + ", ".join(f"{n} {v:.2f}"
                                                       for n, v in m["cpu_by"].items()))
    out = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_info(), "python_with": args.with_,
           "python_without": args.without, "medians": medians, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
