"""The search driver: check everything, connect to Ray, run the Tuner, write the results.

Order matters for "bad input writes nothing": arguments, the space, the config and the data are
checked before Ray starts, and the cluster's resources before any trial is launched; the
experiment directory is created by Ray only once the Tuner runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from dnet_tune.config import config_to_dict, parse_set
from dnet_tune.dotted import flatten, merge
from dnet_tune.errors import UserError
from dnet_tune.tune import bests, confirm, results, runner, storage
from dnet_tune.tune.plan import (
    Budget,
    Resources,
    SearchOutcome,
    SearchRequest,
    budget_for,
    check_arguments,
    confirmation_for,
    experiment_name,
    plan_resources,
)
from dnet_tune.tune.sampling import check_against_config
from dnet_tune.tune.space import SearchSpace, default_space_path
from dnet_tune.tune.space_file import load_space
from dnet_tune.tune.view import ProgressLine, SearchView, comparison_table, difference_line


def find_space(req: SearchRequest) -> SearchSpace:
    if req.space:
        return load_space(req.space)
    local = Path("search_spaces") / f"{req.dataset}.yaml"
    return load_space(local if local.is_file() else default_space_path(req.dataset))


def base_config(req: SearchRequest, space: SearchSpace, budget: Budget,
                method: str) -> dict[str, Any]:
    from dnet_tune.run import resolve_config

    data = {"data_dir": req.data_dir} if req.data_dir else {}
    cfg = resolve_config(dataset=req.dataset, sets=req.sets,
                         overrides={"method": {"name": method}, "data": data})
    base = merge(config_to_dict(cfg), space.fixed)
    return merge(base, {"train": {"epochs": budget.max_epochs, "seed": req.seed}})


def resolve_methods(req: SearchRequest, space: SearchSpace) -> list[str]:
    """--methods, else Difficulty-Net and the space file's baselines; every name registered."""
    from dnet_tune.method.methods import METHODS

    methods = req.methods or ["difficulty_net", *space.baselines]
    for m in methods:
        METHODS.get(m)  # an unknown name is one line listing the valid ones
    return methods


def run_search(req: SearchRequest, console: Console) -> SearchOutcome:
    from dnet_tune.config import config_from_dict
    from dnet_tune.data.registry import DATASETS, build_dataset

    check_arguments(req)
    DATASETS.get(req.dataset)  # an unknown name fails here, before any file is looked up
    space = find_space(req)
    methods = resolve_methods(req, space)
    pinned: list[str] = []
    if req.sets:  # what --set fixes is not searched
        space, pinned = space.pin(flatten(parse_set(req.sets)))
    budget = budget_for(req, space)
    for method in methods:  # every method's configs are valid before anything runs
        base = base_config(req, space, budget, method)
        check_against_config(space, base, method, samples=3, seed=req.seed)
    if base["data"]["val_per_class"] < 1:
        raise UserError("the search selects on the validation split; set data.val_per_class "
                        ">= 1 (the 'paper' profile has none: use it with train only)")
    dataset = build_dataset(config_from_dict(base).data)  # missing data fails before Ray

    import ray

    from dnet_tune.tune.preflight import check_cluster
    from dnet_tune.tune.ray_session import connect, release_gpus, wait_for_gpus

    started = connect(req.address)
    try:
        root = storage.normalise(req.storage)
        check_cluster(root)
        wait_for_gpus(req, console)
        res = plan_resources(req, ray.cluster_resources())
        name = experiment_name(req, methods)
        exp = storage.join(root, name)
        if storage.exists(exp):
            raise UserError(f"experiment '{exp}' already exists; pass another --name")
        if pinned:
            console.print(f"fixed by --set, not searched: {', '.join(pinned)}")
        return _execute(req, space, methods, budget, base, dataset, res, name, root, exp,
                        console)
    finally:
        if req.wait_for_gpus > 0 and ray.is_initialized():
            release_gpus()
        if started:
            ray.shutdown()


def _execute(req: SearchRequest, space: SearchSpace, methods: list[str], budget: Budget,
             base: dict[str, Any], dataset: Any, res: Resources, name: str, root: str, exp: str,
             console: Console) -> SearchOutcome:
    import ray

    from dnet_tune.data.registry import summary as data_summary
    from dnet_tune.tune.trainable import DataHandle

    data = DataHandle(ray.put(dataset))  # the one object-store copy every trial reads
    view = SearchView(console, f"{name}: {req.dataset} · {', '.join(methods)}",
                      budget.trials * len(methods))
    run = runner.build_tuner(space, methods, req.seed, budget, base, data, res, name, root,
                             req.reuse_actors, view)
    runner.fit_quietly(run, view)
    records = runner.collect(run)
    summary = results.summary_rows(records, budget.max_epochs)
    plan = confirmation_for(req)
    confirm_rows: list[dict[str, Any]] = []
    if plan is not None:
        jobs = confirm.jobs_for(summary, {r.trial_id: r for r in records}, methods, plan.top,
                                plan.seeds)
        if jobs:
            progress = ProgressLine(console, f"confirming the top {plan.top} of each method "
                                    f"with seeds {', '.join(map(str, plan.seeds))}", len(jobs))
            confirm_rows = confirm.run_jobs(jobs, data, res, progress)
    meta = {"experiment": name, "dataset": req.dataset, "methods": methods,
            "space": space.path, "budget": vars(budget), "seed": req.seed,
            "confirm": ({"top": plan.top, "seeds": plan.seeds} if plan else {"top": 1}),
            "compute": results.compute_by_method(summary, confirm_rows, res.gpus_per_trial),
            "virtual_params": sorted({n for m in methods for n in space.virtual_names(m)}),
            "resources": vars(res), "peak_running_trials": run.recorder.peak_running,
            # per-class counts and shot groups: the report sorts classes by them without
            # needing the dataset on the machine that reads the results
            "data": data_summary(dataset),
            "storage": req.storage, "status": "finished",
            "versions": bests.versions(), "git_sha": bests.git_sha()}
    results.write_tables(exp, records, summary, confirm_rows)
    results.write_json(storage.join(exp, "search.json"), meta)
    rows, diff = bests.comparison(meta, summary, confirm_rows)
    best = bests.write_bests(exp, meta, summary, rows)
    if rows:
        how = (f"confirmed: top {plan.top} per method × seeds {', '.join(map(str, plan.seeds))}"
               if plan else "not confirmed: one seed, the search's own")
        console.print(comparison_table(rows, f"{req.dataset}: every method tuned with the same "
                                             f"budget; chosen on val, test reported ({how})"))
        if diff is not None:
            console.print(difference_line(diff))
    if best is not None:
        console.print(f"best: {best['method']} (trial {best['trial_id']}) mean val "
                      f"{100 * best['val_mean']:.2f}% → {storage.join(exp, 'best_config.yaml')}; "
                      f"every method's choice is in {storage.join(exp, 'best')}/")
    return SearchOutcome(exp, summary, best)
