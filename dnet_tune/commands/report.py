"""`dnet-tune report`: each experiment's method comparison, or one's, with its figures."""

from __future__ import annotations

import argparse
import json
import sys

from dnet_tune.commands import EXIT_USER_ERROR
from dnet_tune.errors import DamagedFile, UserError
from dnet_tune.tune.plan import SearchRequest  # a leaf: the results root's one default

HELP = "each experiment's method comparison (or one's)"


def add_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("experiment", nargs="?",
                   help="experiment directory (default: every experiment under --storage)")
    r.add_argument("--storage", default=SearchRequest().storage,
                   help="results root: path or URI")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument("--html", metavar="FILE",
                   help="also write one self-contained HTML report with every figure")
    r.add_argument("--png", metavar="DIR", help="also write the figures as PNG files into DIR")


def run(args: argparse.Namespace) -> int:
    from dnet_tune.console import make_console, print_copyable
    from dnet_tune.fileio import json_safe
    from dnet_tune.tune.report.chosen_configs import report
    from dnet_tune.tune.report.text import print_report

    skipped: list[DamagedFile] = []
    reports = report(args.storage, args.experiment, skipped)
    written = _write_figures(args) if args.html or args.png else []
    if args.json:
        for line in written:  # stdout stays one JSON document
            print(line, file=sys.stderr)
        print(json.dumps(json_safe(reports)))
    else:
        console = make_console()
        print_report(console, reports, args.experiment or args.storage)
        for line in written:
            print_copyable(console, line)
    # the experiments that could be read are reported; each damaged one is one error line
    for exc in skipped:
        print(f"dnet-tune: error: {exc} (its experiment is left out of this report)",
              file=sys.stderr)
    return EXIT_USER_ERROR if skipped else 0


def _write_figures(args: argparse.Namespace) -> list[str]:
    from dnet_tune.tune.report.html import make_report

    if args.experiment is None:
        raise UserError("--html and --png draw one experiment: dnet-tune report "
                        "<storage>/<name> --html report.html")
    return make_report(args.experiment, args.html, args.png)
