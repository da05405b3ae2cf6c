"""`dnet-tune train`: one training run, Difficulty-Net or a baseline, no Ray involved."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dnet_tune.commands.shared import add_data_options, data_overrides, method_help
from dnet_tune.dotted import merge
from dnet_tune.errors import UserError

if TYPE_CHECKING:  # rich is imported when a run starts, not for --help
    from rich.progress import Progress

HELP = "one training run (Difficulty-Net or a baseline)"


def add_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--dataset", help="registered dataset (see `dnet-tune data list`)")
    method_help(t.add_argument("--method"),
                "%(default_method)s (default) or a baseline: %(baselines)s")
    t.add_argument("--model", help="backbone (default: the dataset recipe's)")
    t.add_argument("--epochs", type=int, help="stage-1 training epochs (stage 2 adds "
                                              "stage2.epochs); the step milestones follow")
    t.add_argument("--seed", type=int, help="seed of every random draw of the run")
    t.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--recipe", help="a published setting from recipes/ (e.g. paper: the "
                                    "authors' CIFAR-LT two-stage recipe) or a recipe YAML")
    t.add_argument("--config", help="YAML config (e.g. written by a run or by export)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set method.lam=1.0 (repeatable)")
    t.add_argument("--output", help="run directory (default runs/<dataset>-<method>-s<seed>)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --output, exactly as its checkpoint describes")
    t.add_argument("--extend", type=int, metavar="N",
                   help="with --resume: N more stage-1 epochs, recorded in the run; the lr "
                        "continues the rest of its schedule, stretched to the new end")
    t.add_argument("--workers", type=int, metavar="N",
                   help="train this one run with N processes (torch.distributed: one per GPU "
                        "with NCCL, gloo on CPU); data.batch_size is the global batch, split "
                        "across them; recorded as train.workers")
    t.add_argument("--smoke", action="store_true", help="shrink the run to seconds (CI)")
    t.add_argument("--quiet", action="store_true", help="no console output")
    add_data_options(t)


def _defaults() -> argparse.Namespace:
    """Every flag at its default: what `--resume` compares the given flags with."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([])


def run(args: argparse.Namespace) -> int:

    from dnet_tune.console import final_table, make_console
    from dnet_tune.run import check_resume_flags, resolve_config, smoke_overrides, train_to_dir

    check_resume_flags(vars(args), vars(_defaults()))
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1 (processes training the run), "
                        f"got {args.workers}")
    console = make_console(args.quiet)
    if args.resume:
        if not args.output:
            raise UserError("--resume needs --output pointing at the run to continue")
        cfg = None
        output = args.output
    else:
        overrides: dict[str, Any] = smoke_overrides() if args.smoke else {}
        flags = {"method": {"name": args.method}, "model": {"name": args.model},
                 "train": {"epochs": args.epochs, "seed": args.seed, "device": args.device,
                           "workers": args.workers}}
        for section, values in flags.items():
            given = {k: v for k, v in values.items() if v is not None}
            if given:
                overrides.setdefault(section, {}).update(given)
        overrides = merge(overrides, data_overrides(args))
        cfg = resolve_config(dataset=args.dataset, recipe=args.recipe, config_path=args.config,
                             sets=args.set, overrides=overrides)
        output = args.output or f"runs/{cfg.data.name}-{cfg.method.name}-s{cfg.train.seed}"

    progress, on_start, on_epoch = _epoch_display(console, output)

    workers = _workers(cfg, output, args.resume)
    try:
        if workers > 1:
            final = _train_distributed(cfg, output, args, workers)
        else:
            final = train_to_dir(cfg, output, resume=args.resume, extend=args.extend,
                                 on_start=on_start, on_epoch=on_epoch)
    except FloatingPointError as exc:  # a diverged run is a result about the config
        progress.stop()
        print(f"dnet-tune: error: the run diverged: {exc} ({output} keeps what ran before); "
              f"lower the learning rate (optim.lr) and train again", file=sys.stderr)
        return 1
    finally:
        progress.stop()
    how = (f"best val_acc of {final['last_epoch']}" if final["selected_by"] == "val_acc"
           else "the last: no validation split (data.val_per_class=0), nothing selected")
    console.print(final_table(final, f"selected epoch {final['selected_epoch']} ({how})"))
    return 0


def _workers(cfg: Any, output: str, resume: bool) -> int:
    """How many processes train the run: the config's, or on --resume the run's own."""
    if not resume:
        return int(cfg.train.workers)
    from pathlib import Path

    from dnet_tune.config import load_yaml

    recorded = Path(output) / "config.yaml"
    if not recorded.is_file():
        return 1  # train_to_dir says what is missing
    workers = load_yaml(recorded).get("train", {}).get("workers", 1)
    return int(workers) if isinstance(workers, int) else 1


def _train_distributed(cfg: Any, output: str, args: argparse.Namespace, workers: int
                       ) -> dict[str, Any]:
    """Spawn the ranks; rank 0 shows the progress and every rank returns the same summary,
    which rank 0 has written to final.json."""
    import json
    from pathlib import Path

    import torch

    from dnet_tune.config import config_from_dict, load_yaml, resolve_threads
    from dnet_tune.distributed.launch import spawn
    from dnet_tune.distributed.trainer import check_distributed, check_local_launch

    if cfg is None:
        cfg = config_from_dict(load_yaml(Path(output) / "config.yaml"))
    elif cfg.train.threads == "auto":  # the machine's threads shared by the ranks, recorded
        cfg = resolve_threads(cfg, max(1, torch.get_num_threads() // workers))
    check_distributed(cfg)
    backend = check_local_launch(cfg)
    spawn(workers, backend, _rank_main, None if args.resume else cfg, output, args.resume,
          args.extend, args.quiet)
    summary: dict[str, Any] = json.loads((Path(output) / "final.json").read_text())
    return summary


def _rank_main(cfg: Any, output: str, resume: bool, extend: int | None, quiet: bool) -> None:
    """One rank of `train --workers N` (a spawned process): rank 0 prints the progress."""
    import torch.distributed as dist

    from dnet_tune.console import make_console
    from dnet_tune.distributed.trainer import run_distributed

    rank0 = dist.get_rank() == 0
    console = make_console(quiet or not rank0)
    progress, on_start, on_epoch = _epoch_display(console, output)

    try:
        run_distributed(cfg, output, resume=resume, extend=extend,
                        on_start=on_start if rank0 else None,
                        on_epoch=on_epoch if rank0 else None)
    finally:
        progress.stop()


def _epoch_display(console: Any, output: str) -> tuple[Progress, Callable[[Any], None],
                                                         Callable[[dict[str, Any]], None]]:
    """The run's header line and its per-epoch progress bar, for one process or rank 0."""
    from dnet_tune.config import total_epochs
    from dnet_tune.console import epoch_progress, epoch_status

    progress: Progress = epoch_progress(console)
    task: list[Any] = []

    def on_start(trainer: Any) -> None:
        c = trainer.cfg
        where = (f"device {trainer.device}" if c.train.workers == 1
                 else f"{c.train.workers} workers on {trainer.device.type}")
        # ends with the run directory: one line whatever the width, so it can be copied
        console.print(f"[bold]{c.data.name}[/] · {c.method.name} · {c.model.name} · "
                      f"{len(trainer.ds.train)} train images, {trainer.num_classes} classes · "
                      f"{where} → {output}", soft_wrap=True)
        progress.start()
        task.append(progress.add_task("train", total=total_epochs(c), completed=trainer.epoch,
                                      status=""))

    def on_epoch(m: dict[str, Any]) -> None:
        progress.update(task[0], completed=m["epoch"], status=epoch_status(m))

    return progress, on_start, on_epoch
