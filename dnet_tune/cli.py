"""The `dnet-tune` command: the table of subcommands, and the one place where a user's mistake
becomes one line.

Every `UserError` (and every argparse mistake) becomes one line on stderr and exit code 2; any
other exception is a bug and keeps its traceback. Each subcommand is a module of
`dnet_tune.commands` that declares its flags beside its handler; the handlers import what they
need when they run, so `dnet-tune --help` starts without torch or Ray.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from dnet_tune.commands import EXIT_INTERRUPTED, EXIT_USER_ERROR
from dnet_tune.errors import UserError

__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "build_parser", "main"]

DESCRIPTION = """\
Hyperparameter search for Difficulty-Net (meta-learned class weights for long-tailed image
recognition) on Ray Tune: ASHA stops weak trials, Optuna's TPE proposes configurations, results
land in Parquet, and the best configuration becomes a training run.

workflow:
  dnet-tune search --dataset cifar10_lt --gpus 8     search on a Ray cluster (or local Ray)
  dnet-tune export dnet-results/<experiment> --out best.yaml
  dnet-tune train --config best.yaml                 the full training run with the best config
"""

# subcommand -> its module under dnet_tune.commands, in the order `--help` lists them
COMMANDS = ("train", "data", "cluster", "search", "report", "export")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see --help)")


def command(name: str) -> ModuleType:
    return importlib.import_module(f"dnet_tune.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dnet-tune", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        module = command(name)
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code: int = command(args.command).run(args)
        return code
    except UserError as exc:
        print(f"dnet-tune: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("dnet-tune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
