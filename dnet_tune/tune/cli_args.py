"""Arguments of `search`, `report` and `export`; Ray is imported only when one of them runs."""

from __future__ import annotations

import argparse
from typing import Any


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_tune_commands(sub: Any) -> None:
    s = sub.add_parser("search", help="hyperparameter search: Ray Tune + ASHA + Optuna TPE")
    s.add_argument("--dataset", default="digits_lt")
    s.add_argument("--method", default="difficulty_net",
                   help="method to tune (a baseline name tunes that baseline)")
    s.add_argument("--gpus", type=_fraction,
                   help="total GPUs the search may use (default: all of the cluster's)")
    s.add_argument("--gpus-per-trial", type=_fraction,
                   help="GPUs per trial (default 1 on GPU; fractions < 1 pack trials)")
    s.add_argument("--cpus-per-trial", type=_fraction, default=1.0)
    s.add_argument("--trials", type=int, help="number of trials (default from the space file)")
    s.add_argument("--max-epochs", type=int, help="epochs of a trial that ASHA never stops")
    s.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial")
    s.add_argument("--reduction-factor", type=float, help="ASHA reduction factor")
    s.add_argument("--space", help="search space YAML (default search_spaces/<dataset>.yaml)")
    s.add_argument("--wait-for-gpus", type=_fraction, default=0.0, metavar="SECONDS",
                   help="on an autoscaling cluster: request --gpus from the autoscaler and "
                        "wait up to SECONDS for them (default 0: use what is there)")
    s.add_argument("--address", help="Ray cluster address (default $RAY_ADDRESS, else local)")
    s.add_argument("--storage", default="./dnet-results", help="results root: path or URI")
    s.add_argument("--name", help="experiment name (default <dataset>-<method>-<time>)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--smoke", action="store_true", help="tiny budget (CI)")
    s.add_argument("--no-baseline", action="store_true",
                   help="skip the same-budget ce baseline row")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed override of the base config (repeatable)")
    s.add_argument("--data-dir", help="dataset root")
    s.add_argument("--quiet", action="store_true")

    r = sub.add_parser("report", help="best configuration per dataset across experiments")
    r.add_argument("--storage", default="./dnet-results")
    r.add_argument("--json", action="store_true")

    e = sub.add_parser("export", help="write the best (or --trial) config of an experiment")
    e.add_argument("experiment", help="experiment directory (<storage>/<name>)")
    e.add_argument("--out", required=True, help="YAML to write")
    e.add_argument("--trial", help="trial id (default: the best by val_acc)")


def run_tune_command(args: Any) -> int:
    from dnet_tune.tune import commands

    if args.command == "search":
        return commands.cmd_search(args)
    if args.command == "report":
        return commands.cmd_report(args)
    if args.command == "export":
        return commands.cmd_export(args)
    raise AssertionError(f"unknown command {args.command}")
