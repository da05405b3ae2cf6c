"""The digits_lt method comparison at the demo's budget, confirmed with 5 seeds.

Every method gets the same search (the digits space's 16 trials, 15 epochs, ASHA), then its top 3
configs are retrained with 5 fresh seeds; the table is what `dnet-tune report` prints, written as
JSON. Accuracy, not speed, is the output: it reads the same on any machine, up to CPU
nondeterminism.

Run: `python bench/compare.py [--out bench/results/compare.json] [--seeds 5]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from machine import machine_info, search_scratch  # bench/ is the script's folder
from rich.console import Console

from dnet_tune.fileio import json_safe
from dnet_tune.tune.plan import SearchRequest
from dnet_tune.tune.report.chosen_configs import report
from dnet_tune.tune.search import run_search


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/compare.json")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="the search's seed")
    args = ap.parse_args()
    with search_scratch() as tmp:
        req = SearchRequest(dataset="digits_lt", gpus=0, storage=str(Path(tmp) / "results"),
                            name="compare", seed=args.seed, confirm_seeds=args.seeds)
        start = time.perf_counter()
        outcome = run_search(req, Console(file=sys.stderr))
        wall = time.perf_counter() - start
        (rep,) = report(str(Path(tmp) / "results"), outcome.experiment)
    out = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "search": {"dataset": "digits_lt", "seed": args.seed, "confirm_seeds": args.seeds},
        "wall_s": wall,
        "rows": rep["rows"], "difference": rep["difference"], "winner": rep["winner"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(json_safe(out), indent=2) + "\n")
    for r in rep["rows"]:
        print(f"{r['method']:18s} val {100 * r['val_mean']:.1f}  test {100 * r['test_mean']:.2f}"
              f" ± {100 * r['test_ci95']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
