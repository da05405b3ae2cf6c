"""The search driver: resources, Ray connection, Tuner with ASHA + Optuna TPE, results.

Order matters for "bad input writes nothing": arguments, the space, the config and the data are
checked before Ray starts, and the cluster's resources before any trial is launched; the
experiment directory is created by Ray only once the Tuner runs.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from dnet_tune.config import config_to_dict, merge, parse_set
from dnet_tune.errors import UserError
from dnet_tune.tune import results
from dnet_tune.tune.space import (
    SearchSpace,
    check_against_config,
    default_space_path,
    flatten,
    load_space,
)

RAY_TEMP_ENV = "DNET_RAY_TEMP_DIR"  # tests point Ray's session files at a pytest tmp dir


@dataclass
class SearchRequest:
    dataset: str = "digits_lt"
    method: str = "difficulty_net"
    gpus: float | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float = 1.0
    trials: int | None = None
    max_epochs: int | None = None
    grace_period: int | None = None
    reduction_factor: float | None = None
    space: str | None = None
    address: str | None = None
    storage: str = "./dnet-results"
    name: str | None = None
    seed: int = 0
    smoke: bool = False
    baseline: bool = True
    sets: list[str] = field(default_factory=list)
    data_dir: str | None = None
    reuse_actors: bool = True  # off only to measure what reuse saves (bench/search.py)
    wait_for_gpus: float = 0.0  # seconds to let an autoscaling cluster bring up --gpus


@dataclass
class Resources:
    gpus: float
    gpus_per_trial: float
    cpus_per_trial: float
    slots: int


# ----------------------------------------------------------------------------- checks


def check_arguments(req: SearchRequest) -> None:
    g = req.gpus_per_trial
    if g is not None and (g <= 0 or (g > 1 and g != int(g))):
        raise UserError(f"--gpus-per-trial must be a fraction in (0, 1] or a whole number of "
                        f"GPUs, got {g:g}")
    if req.gpus is not None and req.gpus < 0:
        raise UserError(f"--gpus must be >= 0, got {req.gpus:g}")
    if req.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {req.cpus_per_trial:g}")
    for flag, v in (("--trials", req.trials), ("--max-epochs", req.max_epochs),
                    ("--grace-period", req.grace_period)):
        if v is not None and v < 1:
            raise UserError(f"{flag} must be >= 1, got {v}")
    if req.wait_for_gpus < 0:
        raise UserError(f"--wait-for-gpus must be >= 0 seconds, got {req.wait_for_gpus:g}")
    if req.wait_for_gpus > 0 and not req.gpus:
        raise UserError("--wait-for-gpus needs --gpus N: the number of GPUs to wait for")
    if req.reduction_factor is not None and req.reduction_factor <= 1:
        raise UserError(f"--reduction-factor must be > 1, got {req.reduction_factor:g}")
    if req.name is not None and (not req.name or "/" in req.name or req.name.startswith(".")):
        raise UserError(f"--name '{req.name}' must be a plain directory name")


def plan_resources(req: SearchRequest, cluster: dict[str, float]) -> Resources:
    """Trial slots from the request, checked against what the cluster really has."""
    have_gpu = float(cluster.get("GPU", 0.0))
    have_cpu = float(cluster.get("CPU", 0.0))
    gpus = have_gpu if req.gpus is None else float(req.gpus)
    if gpus > have_gpu:
        raise UserError(f"--gpus {gpus:g} asks for more GPUs than the cluster has "
                        f"({have_gpu:g}); pass --gpus {have_gpu:g} or fewer")
    if gpus == 0 and req.gpus_per_trial is not None:
        raise UserError("--gpus-per-trial needs GPUs, but the search uses none (--gpus 0 or a "
                        "cluster without GPUs)")
    if gpus > 0:
        gpt = 1.0 if req.gpus_per_trial is None else float(req.gpus_per_trial)
        if gpt > gpus:
            raise UserError(f"--gpus-per-trial {gpt:g} is more than --gpus {gpus:g}")
        slots = math.floor(gpus / gpt + 1e-9)
    else:
        gpt = 0.0
        slots = math.floor(have_cpu / req.cpus_per_trial + 1e-9)
    if req.cpus_per_trial > have_cpu:
        raise UserError(f"--cpus-per-trial {req.cpus_per_trial:g} is more than the cluster's "
                        f"{have_cpu:g} CPUs")
    if slots < 1:
        raise UserError("no trial fits on this cluster with the requested resources")
    return Resources(gpus, gpt, req.cpus_per_trial, slots)


def budget_for(req: SearchRequest, space: SearchSpace) -> dict[str, Any]:
    b = space.smoke if req.smoke else space.budget
    budget = {"trials": req.trials or b.trials, "max_epochs": req.max_epochs or b.max_epochs,
              "grace_period": req.grace_period or b.grace_period,
              "reduction_factor": req.reduction_factor or b.reduction_factor}
    budget["grace_period"] = min(budget["grace_period"], budget["max_epochs"])
    return budget


def find_space(req: SearchRequest) -> SearchSpace:
    if req.space:
        return load_space(req.space)
    local = Path("search_spaces") / f"{req.dataset}.yaml"
    return load_space(local if local.is_file() else default_space_path(req.dataset))


def base_config(req: SearchRequest, space: SearchSpace, budget: dict[str, Any],
                method: str) -> dict[str, Any]:
    from dnet_tune.run import resolve_config

    data = {"data_dir": req.data_dir} if req.data_dir else {}
    cfg = resolve_config(dataset=req.dataset, sets=req.sets,
                         overrides={"method": {"name": method}, "data": data})
    base = merge(config_to_dict(cfg), space.fixed)
    return merge(base, {"train": {"epochs": budget["max_epochs"], "seed": req.seed}})


# ----------------------------------------------------------------------------- ray


def connect(address: str | None) -> bool:
    """Connect to `address` / $RAY_ADDRESS, or start a local Ray; True if we started it."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        from dnet_tune.tune.cluster_checks import check_reachable

        check_reachable(address)
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": True,
                              "logging_level": "ERROR"}
    if address:
        from dnet_tune.tune.cluster_checks import version_mismatch

        try:
            ray.init(address=address, **kwargs)
        except RuntimeError as exc:
            mismatch = version_mismatch(str(exc), address)
            if mismatch is None:
                raise
            raise mismatch from None
        return False
    if os.environ.get(RAY_TEMP_ENV):
        kwargs["_temp_dir"] = os.environ[RAY_TEMP_ENV]
    ray.init(include_dashboard=False, **kwargs)
    return True


def wait_for_gpus(req: SearchRequest, console: Console, poll_s: float = 1.0) -> None:
    """Ask the autoscaler for the trial slots' GPUs and wait until the cluster has `--gpus`.

    Clusters that scale GPU workers from zero have no GPUs when the search starts; without this
    the resource check would refuse `--gpus 8` (by design: no trials stuck in PENDING). The
    request is withdrawn by `release_gpus` when the search ends, so idle nodes can go.
    """
    import ray
    from ray.autoscaler.sdk import request_resources

    want = float(req.gpus or 0)
    have = float(ray.cluster_resources().get("GPU", 0.0))
    if req.wait_for_gpus <= 0 or have >= want:
        return
    per_trial = 1.0 if req.gpus_per_trial is None else float(req.gpus_per_trial)
    slots = max(1, math.floor(want / per_trial + 1e-9))
    request_resources(bundles=[{"GPU": per_trial, "CPU": req.cpus_per_trial}] * slots)
    console.print(f"waiting up to {req.wait_for_gpus:g} s for {want:g} GPUs (cluster has "
                  f"{have:g}); asked the autoscaler for {slots} trial slots")
    deadline = time.monotonic() + req.wait_for_gpus
    while have < want and time.monotonic() < deadline:
        time.sleep(poll_s)
        have = float(ray.cluster_resources().get("GPU", 0.0))
    if have < want:  # run_search withdraws the request on the way out
        raise UserError(f"only {have:g} of --gpus {want:g} GPUs appeared within "
                        f"{req.wait_for_gpus:g} s; check the worker group's max size and quota, "
                        f"or wait longer with --wait-for-gpus")


def release_gpus() -> None:
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[])


def experiment_name(req: SearchRequest) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return req.name or f"{req.dataset}-{req.method}-{stamp}"


# ----------------------------------------------------------------------------- the search


@dataclass
class SearchOutcome:
    experiment: str
    summary: list[dict[str, Any]]
    best: dict[str, Any] | None


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

    started = connect(req.address)
    try:
        from dnet_tune.tune.cluster_checks import check_cluster

        check_cluster(req.storage)
        wait_for_gpus(req, console)
        res = plan_resources(req, ray.cluster_resources())
        name = experiment_name(req)
        exp = results.join(req.storage if results.is_uri(req.storage)
                           else str(Path(req.storage).resolve()), name)
        if results.exists(exp):
            raise UserError(f"experiment '{exp}' already exists; pass another --name")
        from dnet_tune.tune.runner import execute

        if pinned:
            console.print(f"fixed by --set, not searched: {', '.join(pinned)}")
        return execute(req, space, budget, base, dataset, res, name, exp, console)
    finally:
        if req.wait_for_gpus > 0 and ray.is_initialized():
            release_gpus()
        if started:
            ray.shutdown()
