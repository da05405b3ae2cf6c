"""`dnet-tune search`: the hyperparameter search on Ray Tune, from its flags to its exit code.

Every flag that sets a `SearchRequest` field is named after it (`--set` fills `sets`) and takes
its default from the field, and the request is built by walking the fields: a new field without
a flag, or a flag default that drifts from the field's, fails the tests instead of running a
search other than the one asked for.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Any

from dnet_tune.commands import EXIT_INTERRUPTED
from dnet_tune.commands.shared import method_help
from dnet_tune.errors import UserError
from dnet_tune.tune.plan import (  # a leaf: no Ray, no Optuna
    CONFIRM_SEEDS,
    CONFIRM_TOP,
    PLACEMENTS,
    SAMPLERS,
    SCHEDULERS,
    SMOKE_CONFIRM_SEEDS,
    SMOKE_CONFIRM_TOP,
    SearchRequest,
)

HELP = "hyperparameter search: Ray Tune + ASHA + Optuna TPE"

# SearchRequest fields whose flag has another name
FLAG_DEST = {"sets": "set"}
# fields no flag sets one to one: --methods/--method and --no-confirm are read in `request`;
# reuse_actors is off only in bench/search.py
NOT_FLAGS = frozenset({"methods", "confirm", "reuse_actors"})


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",")]


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_arguments(s: argparse.ArgumentParser) -> None:
    d = SearchRequest()  # every default below is its field's
    s.add_argument("--dataset", default=d.dataset,
                   help="registered dataset (default %(default)s; see `dnet-tune data list`)")
    method_help(s.add_argument("--methods", type=_names, default=d.methods, metavar="M1,M2,..."),
                "methods to tune, each with the same budget (default: %(default_method)s and the "
                "space file's baselines)")
    s.add_argument("--method", help="one method to tune: --methods with a single name")
    s.add_argument("--gpus", type=_fraction, default=d.gpus,
                   help="total GPUs the search may use (default: all of the cluster's)")
    s.add_argument("--gpus-per-trial", type=_fraction, default=d.gpus_per_trial,
                   help="GPUs per trial (default 1 on GPU; fractions < 1 pack trials)")
    s.add_argument("--cpus-per-trial", type=_fraction, default=d.cpus_per_trial,
                   help="CPUs per trial (default %(default)g; on CPU-only clusters this sets "
                        "the slots)")
    s.add_argument("--workers-per-trial", type=int, default=d.workers_per_trial, metavar="N",
                   help="train each trial (and each confirmation run) with N data-parallel "
                        "workers through Ray Train, each with --gpus-per-trial and "
                        "--cpus-per-trial (default %(default)s: one process per trial)")
    s.add_argument("--placement", choices=list(PLACEMENTS), default=d.placement,
                   help="where a trial's workers go: pack (default: on one node, which must "
                        "hold them all) or spread (across nodes)")
    s.add_argument("--trials", type=int, default=d.trials,
                   help="number of trials (default from the space file)")
    s.add_argument("--max-epochs", type=int, default=d.max_epochs,
                   help="epochs of a trial that ASHA never stops")
    s.add_argument("--grace-period", type=int, default=d.grace_period,
                   help="epochs before ASHA may stop a trial")
    s.add_argument("--reduction-factor", type=float, default=d.reduction_factor,
                   help="ASHA reduction factor")
    s.add_argument("--space", default=d.space,
                   help="search space YAML (default search_spaces/<dataset>.yaml)")
    s.add_argument("--sampler", choices=SAMPLERS, default=d.sampler,
                   help="how configs are proposed: tpe (default: Optuna's own TPE defaults), "
                        "tpe-mv (multivariate grouped TPE, constant liar, startup scaled to "
                        "the budget and the slots), tpe-independent (Optuna 4's defaults), or "
                        "random (a baseline to measure what TPE gains); search.json records "
                        "every setting")
    s.add_argument("--scheduler", choices=SCHEDULERS, default=d.scheduler,
                   help="asha (default) stops weak trials at its rungs; none runs every trial to "
                        "--max-epochs")
    s.add_argument("--wait-for-gpus", type=_fraction, default=d.wait_for_gpus, metavar="SECONDS",
                   help="on an autoscaling cluster: request --gpus from the autoscaler and "
                        "wait up to SECONDS for them (default %(default)g: use what is there)")
    s.add_argument("--max-failures", type=int, default=d.max_failures, metavar="N",
                   help="retries of a trial whose worker dies (OOM, preemption), each from "
                        "its last checkpoint (default %(default)s)")
    s.add_argument("--warm-start", type=int, default=d.warm_start, metavar="K",
                   help="first evaluate, per method, the best K configs that earlier searches "
                        "of the dataset under --storage confirmed (default %(default)s: none)")
    s.add_argument("--resume", default=d.resume, metavar="EXPERIMENT",
                   help="continue <storage>/<name> after its driver died or was stopped, with "
                        "the settings it started with")
    s.add_argument("--optuna-storage", default=d.optuna_storage, metavar="URL",
                   help="a database for the Optuna studies, e.g. postgresql://user@host/db "
                        "(default: optuna.journal in the experiment folder)")
    s.add_argument("--address", default=d.address,
                   help="Ray cluster address (default $RAY_ADDRESS, else local)")
    s.add_argument("--storage", default=d.storage, help="results root: path or URI")
    s.add_argument("--name", default=d.name,
                   help="experiment name (default <dataset>-<method>-<time>)")
    s.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the TPE sampler and of every trial's training (default "
                        "%(default)s)")
    s.add_argument("--smoke", action="store_true", default=d.smoke,
                   help=f"tiny budget (CI); confirmation with {SMOKE_CONFIRM_TOP} config x "
                        f"{SMOKE_CONFIRM_SEEDS} seeds")
    s.add_argument("--confirm-top", type=int, default=d.confirm_top, metavar="K",
                   help=f"retrain the top K configs of each method (default {CONFIRM_TOP})")
    s.add_argument("--confirm-seeds", type=int, default=d.confirm_seeds, metavar="S",
                   help=f"with S fresh seeds each (default {CONFIRM_SEEDS})")
    s.add_argument("--no-confirm", action="store_true", default=not d.confirm,
                   help="skip the confirmation: numbers from one seed, no intervals")
    s.add_argument("--no-baseline", action="store_true",
                   help="retired: baselines are now tuned like Difficulty-Net; use --methods")
    s.add_argument("--set", action="append", default=d.sets, metavar="KEY=VALUE",
                   help="fixed override of the base config (repeatable)")
    s.add_argument("--recipe", default=d.recipe,
                   help="a recipes/ layer under the base config (train.epochs becomes the "
                        "budget's max_epochs; stage 2's stay)")
    s.add_argument("--data-dir", default=d.data_dir, help="dataset root")
    s.add_argument("--quiet", action="store_true", help="no console output")


def request(args: argparse.Namespace, methods: list[str] | None) -> SearchRequest:
    """The request the flags ask for, field by field."""
    given = {f.name: getattr(args, FLAG_DEST.get(f.name, f.name))
             for f in fields(SearchRequest) if f.name not in NOT_FLAGS}
    return SearchRequest(**given, methods=methods, confirm=not args.no_confirm)


def _defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([])


def run(args: argparse.Namespace) -> int:
    from dnet_tune.console import make_console
    from dnet_tune.tune.plan import SearchInterrupted, StorageStopped
    from dnet_tune.tune.results import ResultsWriteError
    from dnet_tune.tune.search import run_search

    if args.resume:
        from dnet_tune.tune.faults.resume import refuse_changing_flags

        refuse_changing_flags(args, _defaults())
    if args.method and args.methods:
        raise UserError("pass --method or --methods, not both")
    methods = [args.method] if args.method else args.methods
    if args.no_baseline:
        print("dnet-tune: --no-baseline is retired: baselines are now tuned with the same "
              "budget; searching Difficulty-Net alone (same as --methods difficulty_net)",
              file=sys.stderr)
        methods = methods or ["difficulty_net"]
    try:
        outcome = run_search(request(args, methods), make_console(args.quiet))
    except (ResultsWriteError, StorageStopped) as exc:
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
