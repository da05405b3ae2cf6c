"""`dnet-tune data`: the registered datasets, their per-class counts, and CIFAR's download."""

from __future__ import annotations

import argparse
import json

from dnet_tune.commands.shared import add_data_options, data_overrides
from dnet_tune.shot_groups import SHOT_GROUPS

HELP = "datasets: list, describe, download"


def add_arguments(d: argparse.ArgumentParser) -> None:
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=type(d))
    dsub.add_parser("list", help="registered datasets")
    desc = dsub.add_parser("describe", help="per-class image counts of every split")
    desc.add_argument("dataset", help="registered dataset")
    desc.add_argument("--json", action="store_true", help="machine-readable output")
    desc.add_argument("--recipe", help="apply a recipe's data settings (e.g. paper)")
    add_data_options(desc)
    dl = dsub.add_parser("download", help="fetch CIFAR with torchvision (needs internet)")
    dl.add_argument("name", choices=["cifar10", "cifar100"], help="which dataset")
    dl.add_argument("--data-dir", required=True, help="where to put the dataset")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from dnet_tune.console import make_console
    from dnet_tune.data import registry

    console = make_console()
    if args.data_command == "list":
        table = Table("dataset", "description")
        for name, description in registry.list_datasets():
            table.add_row(name, description)
        console.print(table)
        return 0
    if args.data_command == "download":
        from dnet_tune.data.download import download

        download(args.name, args.data_dir)
        return 0
    from dnet_tune.run import resolve_data_config

    info = registry.describe(resolve_data_config(dataset=args.dataset, recipe=args.recipe,
                                                 overrides=data_overrides(args)))
    if args.json:
        print(json.dumps(info))
        return 0
    table = Table("class", "train", "meta", "val", "test", "group",
                  title=f"{info['dataset']}: {sum(info['train'])} train images")
    group_of = {c: g for g in SHOT_GROUPS for c in info[g]}
    for c in range(info["num_classes"]):
        table.add_row(str(c), *(str(info[s][c]) for s in ("train", "meta", "val", "test")),
                      group_of.get(c, ""))
    console.print(table)
    return 0
