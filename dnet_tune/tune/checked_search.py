"""Everything a search checks and derives before Ray starts: the space, each method's base
config, the budget, the data, the fingerprint of a resumed experiment.

Bad input writes nothing: every check here runs before the driver connects to Ray or writes a
file (`search.py` takes a `CheckedSearch` from here and only then opens the experiment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnet_tune.config import config_from_dict, config_to_dict, parse_set
from dnet_tune.data.registry import DATASETS, build_dataset
from dnet_tune.dotted import flatten, merge
from dnet_tune.errors import UserError
from dnet_tune.method import DIFFICULTY_NET
from dnet_tune.method.methods import METHODS
from dnet_tune.run import resolve_config, resolve_dict, smoke_overrides
from dnet_tune.tune import storage
from dnet_tune.tune.faults import resume, studies
from dnet_tune.tune.plan import (
    LENGTH_KEYS,
    Budget,
    Confirmation,
    SearchRequest,
    budget_for,
    check_arguments,
    confirmation_for,
    run_epochs,
)
from dnet_tune.tune.sampling import apply_flat, check_against_config
from dnet_tune.tune.space import SearchSpace, default_space_path
from dnet_tune.tune.space_file import load_space


def find_space(req: SearchRequest) -> SearchSpace:
    if req.space:
        return load_space(req.space)
    local = Path("search_spaces") / f"{req.dataset}.yaml"
    return load_space(local if local.is_file() else default_space_path(req.dataset))


def base_config(req: SearchRequest, space: SearchSpace, budget: Budget,
                method: str) -> dict[str, Any]:
    """Every trial's config before sampling: defaults < dataset < recipe < the space's
    `fixed:` < --set < the search's own flags (method, --data-dir, budget, seed).

    A space fixes what suits its budget (e.g. the two-stage space's stage-2 length); --set
    is the user's word for this one search, so it wins (`fixed_overridden` names each case).
    --smoke shrinks an enabled stage 2 as it shrinks stage 1 (to `train --smoke`'s length),
    unless --set gives stage 2's length.
    """
    data = {"data_dir": req.data_dir} if req.data_dir else {}
    flags = {"method": {"name": method}, "data": data}
    below = resolve_dict(dataset=req.dataset, recipe=req.recipe, overrides=flags)
    try:
        config_from_dict(merge(below, space.fixed))
    except UserError as exc:
        raise UserError(f"search space '{space.path}': fixed: {exc}") from None
    sets = parse_set(req.sets)
    layered = merge(merge(merge(below, space.fixed), sets), flags)
    # a trial's intra-op threads are part of its config (what ran is what an export replays):
    # `auto` is the trial's CPUs, as Ray's OMP_NUM_THREADS had it
    threads = layered["train"]["threads"]
    workers = flatten(sets).get("train.workers")
    if workers is not None and workers != req.workers_per_trial:
        raise UserError(f"--set train.workers={workers} differs from --workers-per-trial "
                        f"{req.workers_per_trial}; a trial's workers are set by "
                        f"--workers-per-trial alone: drop the --set")
    layered = merge(layered, {"train": {
        "epochs": budget.max_epochs, "seed": req.seed, "workers": req.workers_per_trial,
        "threads": max(1, int(req.cpus_per_trial)) if threads == "auto" else threads}})
    if req.smoke:
        shrink = smoke_overrides()
        layered = merge(layered, {"optim": shrink["optim"]})  # 2 epochs hold no warm-up
        if layered["stage2"]["enabled"] and "stage2.epochs" not in flatten(sets):
            layered = merge(layered, {"stage2": shrink["stage2"]})
    # `layered` is complete, so resolve_config only adds its checks (method, dataset recipe)
    return config_to_dict(resolve_config(overrides=layered))


def fixed_overridden(space: SearchSpace, sets: list[str]) -> list[str]:
    """`key=value (fixed: value)` for each --set key the space's `fixed:` also sets."""
    fixed = flatten(space.fixed)
    out = []
    for key, value in flatten(parse_set(sets)).items():
        clash = [k for k in fixed if k == key or k.startswith(f"{key}.") or key.startswith(f"{k}.")]
        if clash:
            was = ", ".join(f"{fixed[k]}" if k == key else f"{k}={fixed[k]}" for k in clash)
            out.append(f"{key}={value} (fixed: {was})")
    return out


def check_groups(base: dict[str, Any], sampled: list[dict[str, Any]],
                 virtual: Any) -> None:
    """What cannot train with --workers-per-trial workers (a method, a model, a batch size that
    does not split), one line before Ray starts: the base config and a few sampled ones go
    through `train --workers`'s own check. (Not its local-launch check: the driver may have no
    GPU, and Ray Train, not this machine, starts the workers and their process group.)"""
    from dnet_tune.distributed.trainer import check_distributed

    for flat in [{}, *sampled]:
        cfg = config_from_dict(apply_flat(base, flat, virtual) if flat else base)
        try:
            check_distributed(cfg)
        except UserError as exc:
            raise UserError(str(exc).replace("--workers", "--workers-per-trial")) from None


def run_length(bases: dict[str, dict[str, Any]]) -> int:
    """The epochs every trial runs: one ASHA schedule (one `max_t`) and one table of trial
    statuses need one length for all methods."""
    lengths = {m: run_epochs(b) for m, b in bases.items()}
    if len(set(lengths.values())) > 1:
        each = ", ".join(f"{m} {n}" for m, n in lengths.items())
        raise UserError(f"the methods' configs train for different numbers of epochs ({each}); "
                        f"a search runs every trial for the same length: set train.epochs and "
                        f"stage2 the same for all")
    return next(iter(lengths.values()))


def resolve_methods(req: SearchRequest, space: SearchSpace) -> list[str]:
    """--methods, else Difficulty-Net and the space file's baselines; every name registered."""
    methods = req.methods or [DIFFICULTY_NET, *space.baselines]
    for m in methods:
        METHODS.get(m)  # an unknown name is one line listing the valid ones
    return methods


@dataclass
class CheckedSearch:
    """A checked request and everything derived from it before Ray starts."""

    req: SearchRequest
    space: SearchSpace
    methods: list[str]
    budget: Budget
    bases: dict[str, dict[str, Any]]  # each method's base config, by method name
    epochs: int  # how long every trial runs (max_epochs + stage 2's)
    dataset: Any
    confirmation: Confirmation | None
    fingerprint: dict[str, Any]
    pinned: list[str]
    resumed: dict[str, Any] | None  # search.json of the experiment being resumed
    overridden: list[str] = field(default_factory=list)  # --set over the space's `fixed:`


def _for_resume(req: SearchRequest) -> tuple[SearchRequest, dict[str, Any]]:
    """The stored request of the experiment at --resume, placed where it now is."""
    exp = storage.normalise(req.resume or "")
    meta, stored = resume.load_for_resume(exp)
    stored.resume = exp
    stored.address = req.address
    stored.storage, _, stored.name = exp.rstrip("/").rpartition("/")
    stored_db = meta.get("optuna_storage")
    if req.optuna_storage and studies.masked(req.optuna_storage) != stored_db:
        raise UserError(f"--optuna-storage differs from the experiment's ({stored_db}); a "
                        f"resume continues the studies where they are")
    if stored_db and "***" in str(stored_db) and not req.optuna_storage:
        raise UserError(f"this experiment's studies are in {stored_db}: pass "
                        f"--optuna-storage with its password to resume")
    stored.optuna_storage = req.optuna_storage or (
        stored_db if stored_db and stored_db != studies.JOURNAL else None)
    return stored, meta


def plan_search(req: SearchRequest) -> CheckedSearch:
    resumed = None
    if req.resume:
        req, resumed = _for_resume(req)
    check_arguments(req)
    DATASETS.get(req.dataset)  # an unknown name fails here, before any file is looked up
    space = find_space(req)
    space_path = str(Path(space.path).resolve())
    methods = resolve_methods(req, space)
    pinned: list[str] = []
    if req.sets:  # what --set fixes is not searched
        space, pinned = space.pin(flatten(parse_set(req.sets)))
    for method in methods:
        for p in space.params_for(method):
            if p.name in LENGTH_KEYS:
                raise UserError(f"search space '{space.path}': {p.name} sets how long a trial "
                                f"runs and cannot be searched under one ASHA schedule; fix it "
                                f"under `fixed:` or with --set")
    budget = budget_for(req, space)
    bases = {m: base_config(req, space, budget, m) for m in methods}
    for method, base in bases.items():  # every method's configs are valid before anything runs
        sampled = check_against_config(space, base, method, samples=3, seed=req.seed)
        if req.workers_per_trial > 1:
            check_groups(base, sampled, space.virtual_names(method))
    epochs = run_length(bases)
    if any(b["data"]["val_per_class"] < 1 for b in bases.values()):
        raise UserError("the search selects on the validation split; set data.val_per_class "
                        ">= 1 (the 'paper' profile has none: use it with train only)")
    confirmation = confirmation_for(req)
    fp = resume.fingerprint(space_path, budget, methods, req.seed, confirmation, req.dataset,
                            req.sets)
    if resumed is not None:
        resume.check_fingerprint(resumed["fingerprint"], fp, space_path)
    # one dataset serves every method (what a run trains on never depends on its method);
    # missing data fails here, before Ray starts
    dataset = build_dataset(config_from_dict(bases[methods[0]]).data)
    return CheckedSearch(req, space, methods, budget, bases, epochs, dataset, confirmation, fp,
                         pinned, resumed, fixed_overridden(space, req.sets))
