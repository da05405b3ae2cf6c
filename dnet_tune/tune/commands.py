"""`search`, `report` and `export`: argument mapping and printing, nothing else."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.table import Table

from dnet_tune.console import make_console, pct
from dnet_tune.io import json_safe


def cmd_search(args: Any) -> int:
    from dnet_tune.tune.search import SearchRequest, run_search

    req = SearchRequest(
        dataset=args.dataset, method=args.method, gpus=args.gpus,
        gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
        trials=args.trials, max_epochs=args.max_epochs, grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, space=args.space, address=args.address,
        storage=args.storage, name=args.name, seed=args.seed, smoke=args.smoke,
        baseline=not args.no_baseline, sets=args.set, data_dir=args.data_dir,
        wait_for_gpus=args.wait_for_gpus,
    )
    outcome = run_search(req, make_console(args.quiet))
    if outcome.best is None:
        errors = [r["error"] for r in outcome.summary if r["role"] == "search" and r["error"]]
        first = f"; first error: {errors[0]}" if errors else ""
        print(f"dnet-tune: error: no trial of '{outcome.experiment}' reported a result"
              f"{first}; see the trials' error.txt", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: Any) -> int:
    from dnet_tune.tune.results import report

    rows = report(args.storage)
    if args.json:
        print(json.dumps(json_safe(rows)))
        return 0
    console = make_console()
    if not rows:
        console.print(f"no finished experiments under '{args.storage}'")
        return 0
    table = Table(title=f"best per dataset in {args.storage} (%; many/medium/few and ce on test)")
    for col in ("dataset", "method", "val", "test", "many", "medium", "few", "ce"):
        table.add_column(col, justify="left" if col in ("dataset", "method") else "right",
                         no_wrap=True)
    for r in rows:
        table.add_row(r["dataset"], r["method"], pct(r["val_acc"]), pct(r["test_acc"]),
                      pct(r["test_many"]), pct(r["test_medium"]), pct(r["test_few"]),
                      pct(r["baseline_test_acc"]))
    console.print(table)
    for r in rows:
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(r["config"].items())
                           if not k.startswith("dn.width_") and k != "dn.depth")
        console.print(f"[bold]{r['dataset']}[/]: trial {r['trial_id']} epoch {r['epoch']} of "
                      f"{r['experiment']}\n  {params}")
    return 0


def cmd_export(args: Any) -> int:
    from dnet_tune.tune.results import export

    row = export(args.experiment, args.out, args.trial)
    make_console().print(f"wrote {args.out}: trial {row['trial_id']}, val_acc "
                         f"{pct(row['best_val_acc'])}% at epoch {row['best_epoch']}; "
                         f"run it with: dnet-tune train --config {args.out}")
    return 0


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
