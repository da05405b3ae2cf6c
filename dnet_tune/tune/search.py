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
from dnet_tune.tune import results, runner, storage
from dnet_tune.tune.plan import (
    Budget,
    SearchOutcome,
    SearchRequest,
    budget_for,
    check_arguments,
    experiment_name,
    plan_resources,
)
from dnet_tune.tune.sampling import check_against_config
from dnet_tune.tune.space import SearchSpace, default_space_path
from dnet_tune.tune.space_file import load_space
from dnet_tune.tune.view import SearchView, top_table


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


def run_search(req: SearchRequest, console: Console) -> SearchOutcome:
    from dnet_tune.config import config_from_dict
    from dnet_tune.data.registry import DATASETS, build_dataset
    from dnet_tune.method.methods import METHODS

    check_arguments(req)
    DATASETS.get(req.dataset)  # an unknown name fails here, before any file is looked up
    METHODS.get(req.method)
    space = find_space(req)
    pinned: list[str] = []
    if req.sets:  # what --set fixes is not searched
        space, pinned = space.pin(flatten(parse_set(req.sets)))
    budget = budget_for(req, space)
    base = base_config(req, space, budget, req.method)
    if base["data"]["val_per_class"] < 1:
        raise UserError("the search selects on the validation split; set data.val_per_class "
                        ">= 1 (the 'paper' profile has none: use it with train only)")
    check_against_config(space, base, req.method, samples=3, seed=req.seed)
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
        name = experiment_name(req)
        exp = storage.join(root, name)
        if storage.exists(exp):
            raise UserError(f"experiment '{exp}' already exists; pass another --name")
        if pinned:
            console.print(f"fixed by --set, not searched: {', '.join(pinned)}")
        return _execute(req, space, budget, base, dataset, res, name, root, exp, console)
    finally:
        if req.wait_for_gpus > 0 and ray.is_initialized():
            release_gpus()
        if started:
            ray.shutdown()


def _execute(req: SearchRequest, space: SearchSpace, budget: Budget, base: dict[str, Any],
             dataset: Any, res: Any, name: str, root: str, exp: str,
             console: Console) -> SearchOutcome:
    import ray

    from dnet_tune.tune.trainable import DataHandle

    data = DataHandle(ray.put(dataset))  # the one object-store copy every trial reads
    view = SearchView(console, f"{name}: {req.dataset} · {req.method}", budget.trials)
    run = runner.build_tuner(space, req.method, req.seed, budget, base, data, res, name, root,
                             req.reuse_actors, view)
    baseline = (runner.launch_baseline(data, base, res)
                if req.baseline and req.method == "difficulty_net" else None)
    runner.fit_quietly(run, view)
    records = runner.collect(run, baseline, console)
    meta = {"experiment": name, "dataset": req.dataset, "method": req.method,
            "space": space.path, "budget": vars(budget), "seed": req.seed,
            "virtual_params": sorted(space.virtual_names(req.method)),
            "resources": vars(res), "peak_running_trials": run.recorder.peak_running,
            "storage": req.storage,
            "versions": results.versions(), "git_sha": results.git_sha()}
    summary, best = results.write_experiment(exp, records, budget.max_epochs, meta)
    if any(r["best_val_acc"] is not None for r in summary):
        console.print(top_table(summary))
    if best is not None:
        console.print(f"best: trial {best['trial_id']} val_acc {100 * best['best_val_acc']:.2f}% "
                      f"at epoch {best['best_epoch']} → {storage.join(exp, 'best_config.yaml')}")
    return SearchOutcome(exp, summary, best)
