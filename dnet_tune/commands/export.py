"""`dnet-tune export`: an experiment's chosen config as a `train --config` file."""

from __future__ import annotations

import argparse

HELP = "write the winner's (or a method's) config of an experiment"


def add_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("experiment", help="experiment directory (<storage>/<name>)")
    e.add_argument("--out", required=True, help="YAML to write")
    e.add_argument("--method", help="that method's chosen config (default: the winner's)")
    e.add_argument("--trial", help="one trial's config instead, as the search ran it")


def run(args: argparse.Namespace) -> int:
    from dnet_tune.console import make_console, pct, print_copyable
    from dnet_tune.tune.report.chosen_configs import export

    row, status = export(args.experiment, args.out, args.trial, args.method)
    seeds = f" over seeds {row['seeds']}" if row["seeds"] else ""
    console = make_console()
    if status != "finished":
        print_copyable(console, f"note: {args.experiment} is {status}: this is the best so "
                                f"far, not a confirmed choice")
    print_copyable(console, f"wrote {args.out}: {row['method']}, trial {row['trial_id']}, mean "
                            f"val {pct(row['val_mean'])}%{seeds}; run it with: dnet-tune train "
                            f"--config {args.out}")
    return 0
