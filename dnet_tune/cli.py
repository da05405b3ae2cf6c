"""The `dnet-tune` command: parse, call one function per subcommand, render user errors.

Every `UserError` (and every argparse mistake) becomes one line on stderr and exit code 2; any
other exception is a bug and keeps its traceback. `COMMANDS` is the one table of subcommands; each
handler imports what it needs when it runs, so `dnet-tune --help` starts without torch or Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from dnet_tune.dotted import merge
from dnet_tune.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C

DESCRIPTION = """\
Hyperparameter search for Difficulty-Net (meta-learned class weights for long-tailed image
recognition) on Ray Tune: ASHA stops weak trials, Optuna's TPE proposes configurations, results
land in Parquet, and the best configuration becomes a training run.

workflow:
  dnet-tune search --dataset cifar10_lt --gpus 8     search on a Ray cluster (or local Ray)
  dnet-tune export dnet-results/<experiment> --out best.yaml
  dnet-tune train --config best.yaml                 the full training run with the best config
"""


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
    parser = _Parser(prog="dnet-tune", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="one training run (Difficulty-Net or a baseline)")
    t.add_argument("--dataset", help="registered dataset (see `dnet-tune data list`)")
    t.add_argument("--method", help="difficulty_net (default) or a baseline: ce, "
                                    "balanced_softmax, focal, class_balanced, cdb_ce")
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
    t.add_argument("--smoke", action="store_true", help="shrink the run to seconds (CI)")
    t.add_argument("--quiet", action="store_true", help="no console output")
    _add_data_options(t)

    d = sub.add_parser("data", help="datasets: list, describe, download")
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    dsub.add_parser("list", help="registered datasets")
    desc = dsub.add_parser("describe", help="per-class image counts of every split")
    desc.add_argument("dataset", help="registered dataset")
    desc.add_argument("--json", action="store_true", help="machine-readable output")
    desc.add_argument("--recipe", help="apply a recipe's data settings (e.g. paper)")
    _add_data_options(desc)
    dl = dsub.add_parser("download", help="fetch CIFAR with torchvision (needs internet)")
    dl.add_argument("name", choices=["cifar10", "cifar100"], help="which dataset")
    dl.add_argument("--data-dir", required=True, help="where to put the dataset")

    c = sub.add_parser("cluster", help="Ray cluster configs")
    csub = c.add_subparsers(dest="cluster_command", required=True, parser_class=_Parser)
    chk = csub.add_parser("check", help="validate cluster-launcher / KubeRay files offline")
    chk.add_argument("files", nargs="+", help="launcher YAMLs, KubeRay manifests or folders")

    _add_tune_commands(sub)
    return parser


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",")]


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _add_tune_commands(sub: Any) -> None:
    from dnet_tune.tune.plan import SAMPLERS, SCHEDULERS  # a leaf: no Ray, no Optuna

    s = sub.add_parser("search", help="hyperparameter search: Ray Tune + ASHA + Optuna TPE")
    s.add_argument("--dataset", default="digits_lt",
                   help="registered dataset (default digits_lt; see `dnet-tune data list`)")
    s.add_argument("--methods", type=_names, metavar="M1,M2,...",
                   help="methods to tune, each with the same budget (default: difficulty_net "
                        "and the space file's baselines)")
    s.add_argument("--method", help="one method to tune: --methods with a single name")
    s.add_argument("--gpus", type=_fraction,
                   help="total GPUs the search may use (default: all of the cluster's)")
    s.add_argument("--gpus-per-trial", type=_fraction,
                   help="GPUs per trial (default 1 on GPU; fractions < 1 pack trials)")
    s.add_argument("--cpus-per-trial", type=_fraction, default=1.0,
                   help="CPUs per trial (default 1; on CPU-only clusters this sets the slots)")
    s.add_argument("--trials", type=int, help="number of trials (default from the space file)")
    s.add_argument("--max-epochs", type=int, help="epochs of a trial that ASHA never stops")
    s.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial")
    s.add_argument("--reduction-factor", type=float, help="ASHA reduction factor")
    s.add_argument("--space", help="search space YAML (default search_spaces/<dataset>.yaml)")
    s.add_argument("--sampler", choices=SAMPLERS, default=SAMPLERS[0],
                   help="how configs are proposed: Optuna TPE (default), or uniformly at random "
                        "(a baseline to measure what TPE gains)")
    s.add_argument("--scheduler", choices=SCHEDULERS, default=SCHEDULERS[0],
                   help="asha (default) stops weak trials at its rungs; none runs every trial to "
                        "--max-epochs")
    s.add_argument("--wait-for-gpus", type=_fraction, default=0.0, metavar="SECONDS",
                   help="on an autoscaling cluster: request --gpus from the autoscaler and "
                        "wait up to SECONDS for them (default 0: use what is there)")
    s.add_argument("--max-failures", type=int, default=3, metavar="N",
                   help="retries of a trial whose worker dies (OOM, preemption), each from "
                        "its last checkpoint (default 3)")
    s.add_argument("--warm-start", type=int, default=0, metavar="K",
                   help="first evaluate, per method, the best K configs that earlier searches "
                        "of the dataset under --storage confirmed (default 0: none)")
    s.add_argument("--resume", metavar="EXPERIMENT",
                   help="continue <storage>/<name> after its driver died or was stopped, with "
                        "the settings it started with")
    s.add_argument("--optuna-storage", metavar="URL",
                   help="a database for the Optuna studies, e.g. postgresql://user@host/db "
                        "(default: optuna.journal in the experiment folder)")
    s.add_argument("--address", help="Ray cluster address (default $RAY_ADDRESS, else local)")
    s.add_argument("--storage", default="./dnet-results", help="results root: path or URI")
    s.add_argument("--name", help="experiment name (default <dataset>-<method>-<time>)")
    s.add_argument("--seed", type=int, default=0,
                   help="seed of the TPE sampler and of every trial's training (default 0)")
    s.add_argument("--smoke", action="store_true",
                   help="tiny budget (CI); confirmation with 1 config x 2 seeds")
    s.add_argument("--confirm-top", type=int, metavar="K",
                   help="retrain the top K configs of each method (default 3)")
    s.add_argument("--confirm-seeds", type=int, metavar="S",
                   help="with S fresh seeds each (default 3)")
    s.add_argument("--no-confirm", action="store_true",
                   help="skip the confirmation: numbers from one seed, no intervals")
    s.add_argument("--no-baseline", action="store_true",
                   help="retired: baselines are now tuned like Difficulty-Net; use --methods")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed override of the base config (repeatable)")
    s.add_argument("--recipe", help="a recipes/ layer under the base config (train.epochs "
                                    "becomes the budget's max_epochs; stage 2's stay)")
    s.add_argument("--data-dir", help="dataset root")
    s.add_argument("--quiet", action="store_true", help="no console output")

    r = sub.add_parser("report", help="each experiment's method comparison (or one's)")
    r.add_argument("experiment", nargs="?",
                   help="experiment directory (default: every experiment under --storage)")
    r.add_argument("--storage", default="./dnet-results", help="results root: path or URI")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument("--html", metavar="FILE",
                   help="also write one self-contained HTML report with every figure")
    r.add_argument("--png", metavar="DIR", help="also write the figures as PNG files into DIR")

    e = sub.add_parser("export", help="write the winner's (or a method's) config of an "
                                      "experiment")
    e.add_argument("experiment", help="experiment directory (<storage>/<name>)")
    e.add_argument("--out", required=True, help="YAML to write")
    e.add_argument("--method", help="that method's chosen config (default: the winner's)")
    e.add_argument("--trial", help="one trial's config instead, as the search ran it")


# --------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from dnet_tune.config import total_epochs
    from dnet_tune.console import epoch_progress, epoch_status, final_table, make_console
    from dnet_tune.run import check_resume_flags, resolve_config, smoke_overrides, train_to_dir

    check_resume_flags(vars(args), vars(build_parser().parse_args(["train"])))
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
        overrides = merge(overrides, _data_overrides(args))
        cfg = resolve_config(dataset=args.dataset, recipe=args.recipe, config_path=args.config,
                             sets=args.set, overrides=overrides)
        output = args.output or f"runs/{cfg.data.name}-{cfg.method.name}-s{cfg.train.seed}"

    progress: Progress = epoch_progress(console)
    task: list[Any] = []

    def on_start(trainer: Any) -> None:
        c = trainer.cfg
        console.print(f"[bold]{c.data.name}[/] · {c.method.name} · {c.model.name} · "
                      f"{len(trainer.ds.train)} train images, {trainer.num_classes} classes · "
                      f"device {trainer.device} → {output}")
        progress.start()
        task.append(progress.add_task("train", total=total_epochs(c), completed=trainer.epoch,
                                      status=""))

    def on_epoch(m: dict[str, Any]) -> None:
        progress.update(task[0], completed=m["epoch"], status=epoch_status(m))

    try:
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
    from dnet_tune.run import resolve_data_config

    info = registry.describe(resolve_data_config(dataset=args.dataset, recipe=args.recipe,
                                                 overrides=_data_overrides(args)))
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
    from dnet_tune.ops.cluster_files import main_check

    return main_check(args.files)


def cmd_search(args: argparse.Namespace) -> int:
    from dnet_tune.console import make_console
    from dnet_tune.tune.plan import SearchInterrupted, SearchRequest
    from dnet_tune.tune.results import ResultsWriteError
    from dnet_tune.tune.search import run_search

    if args.resume:
        from dnet_tune.tune.faults.resume import refuse_changing_flags

        refuse_changing_flags(args, build_parser().parse_args(["search"]))
    if args.method and args.methods:
        raise UserError("pass --method or --methods, not both")
    methods = [args.method] if args.method else args.methods
    if args.no_baseline:
        print("dnet-tune: --no-baseline is retired: baselines are now tuned with the same "
              "budget; searching Difficulty-Net alone (same as --methods difficulty_net)",
              file=sys.stderr)
        methods = methods or ["difficulty_net"]
    req = SearchRequest(
        dataset=args.dataset, methods=methods, gpus=args.gpus,
        gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
        trials=args.trials, max_epochs=args.max_epochs, grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, space=args.space, address=args.address,
        storage=args.storage, name=args.name, seed=args.seed, smoke=args.smoke,
        confirm=not args.no_confirm, confirm_top=args.confirm_top,
        confirm_seeds=args.confirm_seeds, sets=args.set, recipe=args.recipe,
        data_dir=args.data_dir, wait_for_gpus=args.wait_for_gpus, max_failures=args.max_failures,
        optuna_storage=args.optuna_storage, resume=args.resume, warm_start=args.warm_start,
        sampler=args.sampler, scheduler=args.scheduler,
    )
    try:
        outcome = run_search(req, make_console(args.quiet))
    except ResultsWriteError as exc:
        print(f"dnet-tune: error: {exc}", file=sys.stderr)
        return 1
    except SearchInterrupted as stop:
        return _interrupted(stop.experiment)
    if outcome.interrupted:
        return _interrupted(outcome.experiment)
    if outcome.best is None:
        print(f"dnet-tune: error: {_no_usable_result(outcome.experiment, outcome.summary)}",
              file=sys.stderr)
        return 1
    return 0


def _interrupted(experiment: str) -> int:
    print(f"dnet-tune: interrupted; the results so far are in {experiment}; continue with: "
          f"dnet-tune search --resume {experiment}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _no_usable_result(experiment: str, summary: list[dict[str, Any]]) -> str:
    """One line: how the trials ended and the first reason, so the fix is obvious."""
    counts: dict[str, int] = {}
    for r in summary:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    how = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no trials"
    errors = [r["error"] for r in summary if r["error"]]
    first = f"; first: {errors[0]}" if errors else ""
    where = "; see the trials' error.txt" if counts.get("errored") else ""
    return (f"no trial of '{experiment}' reported a usable result ({how}){first}{where}")


def cmd_report(args: argparse.Namespace) -> int:
    from dnet_tune.console import make_console
    from dnet_tune.fileio import json_safe
    from dnet_tune.tune.report.chosen_configs import report
    from dnet_tune.tune.report.text import print_report

    reports = report(args.storage, args.experiment)
    written = _write_figures(args) if args.html or args.png else []
    if args.json:
        for line in written:  # stdout stays one JSON document
            print(line, file=sys.stderr)
        print(json.dumps(json_safe(reports)))
        return 0
    console = make_console()
    print_report(console, reports, args.experiment or args.storage)
    for line in written:
        console.print(line)
    return 0


def _write_figures(args: argparse.Namespace) -> list[str]:
    from dnet_tune.tune.report.html import make_report

    if args.experiment is None:
        raise UserError("--html and --png draw one experiment: dnet-tune report "
                        "<storage>/<name> --html report.html")
    return make_report(args.experiment, args.html, args.png)


def cmd_export(args: argparse.Namespace) -> int:
    from dnet_tune.console import make_console, pct
    from dnet_tune.tune.report.chosen_configs import export

    row, status = export(args.experiment, args.out, args.trial, args.method)
    seeds = f" over seeds {row['seeds']}" if row["seeds"] else ""
    console = make_console()
    if status != "finished":
        console.print(f"note: {args.experiment} is {status}: this is the best so far, not a "
                      f"confirmed choice", soft_wrap=True)
    console.print(f"wrote {args.out}: {row['method']}, trial {row['trial_id']}, mean val "
                         f"{pct(row['val_mean'])}%{seeds}; run it with: dnet-tune train "
                         f"--config {args.out}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train,
    "data": cmd_data,
    "cluster": cmd_cluster,
    "search": cmd_search,
    "report": cmd_report,
    "export": cmd_export,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"dnet-tune: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("dnet-tune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
