"""The `dnet-tune` command: parse, call one function per subcommand, render user errors.

Every `UserError` (and every argparse mistake) becomes one line on stderr and exit code 2; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from dnet_tune.errors import UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see --help)")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imbalance", type=float, help="imbalance factor n_max/n_min")
    p.add_argument("--meta-per-class", type=int, help="images per class in the meta set H")
    p.add_argument("--val-per-class", type=int, help="images per class in the validation set V")
    p.add_argument("--profile", choices=["standard", "paper"],
                   help="paper: the authors' counts (n_max 4975/475, no validation split)")
    p.add_argument("--data-dir", help="dataset root (default $DNET_DATA_DIR or ~/.cache/dnet-tune)")


def _data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = {"imbalance": "imbalance", "meta_per_class": "meta_per_class",
            "val_per_class": "val_per_class", "profile": "profile", "data_dir": "data_dir"}
    data = {k: getattr(args, a) for a, k in keys.items() if getattr(args, a, None) is not None}
    if data.get("profile") == "paper":
        # the authors' construction spends every class-0 image on train + H: there is no V
        data.setdefault("val_per_class", 0)
    return {"data": data} if data else {}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dnet-tune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="one training run (Difficulty-Net or a baseline)")
    t.add_argument("--dataset")
    t.add_argument("--method")
    t.add_argument("--model")
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--config", help="YAML config (e.g. written by a run or by export)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set method.lam=1.0 (repeatable)")
    t.add_argument("--output", help="run directory (default runs/<dataset>-<method>-s<seed>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --output")
    t.add_argument("--smoke", action="store_true", help="shrink the run to seconds (CI)")
    t.add_argument("--quiet", action="store_true")
    _add_data_options(t)

    d = sub.add_parser("data", help="datasets: list, describe, download")
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    dsub.add_parser("list", help="registered datasets")
    desc = dsub.add_parser("describe", help="per-class image counts of every split")
    desc.add_argument("dataset")
    desc.add_argument("--json", action="store_true")
    _add_data_options(desc)
    dl = dsub.add_parser("download", help="fetch CIFAR with torchvision (needs internet)")
    dl.add_argument("name", choices=["cifar10", "cifar100"])
    dl.add_argument("--data-dir", required=True)

    c = sub.add_parser("cluster", help="Ray cluster configs")
    csub = c.add_subparsers(dest="cluster_command", required=True, parser_class=_Parser)
    chk = csub.add_parser("check", help="validate cluster-launcher / KubeRay files offline")
    chk.add_argument("files", nargs="+")

    from dnet_tune.tune.cli_args import add_tune_commands

    add_tune_commands(sub)
    return parser


# --------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from dnet_tune.console import epoch_progress, epoch_status, final_table, make_console
    from dnet_tune.run import resolve_config, smoke_overrides, train_to_dir

    console = make_console(args.quiet)
    if args.resume:
        if not args.output:
            raise UserError("--resume needs --output pointing at the run to continue")
        cfg = None
        output = args.output
    else:
        overrides: dict[str, Any] = smoke_overrides() if args.smoke else {}
        flags = {"method": {"name": args.method}, "model": {"name": args.model},
                 "train": {"epochs": args.epochs, "seed": args.seed, "device": args.device}}
        for section, values in flags.items():
            given = {k: v for k, v in values.items() if v is not None}
            if given:
                overrides.setdefault(section, {}).update(given)
        overrides = _merge(overrides, _data_overrides(args))
        cfg = resolve_config(dataset=args.dataset, config_path=args.config, sets=args.set,
                             overrides=overrides)
        output = args.output or f"runs/{cfg.data.name}-{cfg.method.name}-s{cfg.train.seed}"

    progress: Progress = epoch_progress(console)
    task: list[Any] = []

    def on_start(trainer: Any) -> None:
        c = trainer.cfg
        console.print(f"[bold]{c.data.name}[/] · {c.method.name} · {c.model.name} · "
                      f"{len(trainer.ds.train)} train images, {trainer.num_classes} classes · "
                      f"device {trainer.device} → {output}")
        progress.start()
        task.append(progress.add_task("train", total=c.train.epochs, completed=trainer.epoch,
                                      status=""))

    def on_epoch(m: dict[str, Any]) -> None:
        progress.update(task[0], completed=m["epoch"], status=epoch_status(m))

    try:
        final = train_to_dir(cfg, output, resume=args.resume,
                             epochs=args.epochs if args.resume else None,
                             on_start=on_start, on_epoch=on_epoch)
    finally:
        progress.stop()
    how = (f"best val_acc of {final['last_epoch']}" if final["selected_by"] == "val_acc"
           else "the last: no validation split (data.val_per_class=0), nothing selected")
    console.print(final_table(final, f"selected epoch {final['selected_epoch']} ({how})"))
    return 0


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    from dnet_tune.config import merge

    return merge(a, b)


def cmd_data(args: argparse.Namespace) -> int:
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
    from dnet_tune.run import resolve_config

    cfg = resolve_config(dataset=args.dataset, overrides=_data_overrides(args))
    info = registry.describe(cfg.data)
    if args.json:
        print(json.dumps(info))
        return 0
    table = Table("class", "train", "meta", "val", "test", "group",
                  title=f"{info['dataset']}: {sum(info['train'])} train images")
    group_of = {c: g for g in ("many", "medium", "few") for c in info[g]}
    for c in range(info["num_classes"]):
        table.add_row(str(c), *(str(info[s][c]) for s in ("train", "meta", "val", "test")),
                      group_of.get(c, ""))
    console.print(table)
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from dnet_tune.cluster import main_check

    return main_check(args.files)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "data":
            return cmd_data(args)
        if args.command == "cluster":
            return cmd_cluster(args)
        from dnet_tune.tune.cli_args import run_tune_command

        return run_tune_command(args)
    except UserError as exc:
        print(f"dnet-tune: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("dnet-tune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
