"""What a search was asked for and what it will use: the plan types, checked before Ray starts.

A leaf of the tune layer (it imports nothing from it), so the driver (`search`), the Tuner
runner and the results writer all share these types without importing each other.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from dnet_tune.config import config_from_dict, total_epochs
from dnet_tune.errors import UserError


@dataclass
class SearchRequest:
    dataset: str = "digits_lt"
    methods: list[str] | None = None  # None: difficulty_net + the space file's baselines
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
    confirm: bool = True
    confirm_top: int | None = None  # K configs per method (None: CONFIRM_TOP; smoke 1)
    confirm_seeds: int | None = None  # S seeds each (None: CONFIRM_SEEDS; smoke 2)
    sets: list[str] = field(default_factory=list)
    recipe: str | None = None  # a recipes/ layer under the trials' base config
    data_dir: str | None = None
    reuse_actors: bool = True  # off only to measure what reuse saves (bench/search.py)
    wait_for_gpus: float = 0.0  # seconds to let an autoscaling cluster bring up --gpus
    max_failures: int = 3  # retries of a trial whose worker died, each from its last checkpoint
    optuna_storage: str | None = None  # a database URL for the studies (default: a journal file)
    resume: str | None = None  # <storage>/<name> of an experiment to continue
    warm_start: int = 0  # per method, enqueue the best K confirmed configs of earlier searches
    sampler: str = "tpe"  # how Optuna proposes: one of SAMPLERS (settings: tune/samplers.py)
    scheduler: str = "asha"  # "asha" stops weak trials; "none" runs every trial to the end
    # >1: each trial (and each confirmation run) is a Ray Train group of this many workers, each
    # with --gpus-per-trial / --cpus-per-trial (tune/train_trial.py)
    workers_per_trial: int = 1
    placement: str = "pack"  # the group's placement group strategy: one of PLACEMENTS


# "How good is a trial", one number everywhere: its best val accuracy so far (the epoch a run
# selects), reported with every epoch. ASHA's rung records and the Optuna studies read it, and
# the summary's best_val_acc, the candidates and the report rank by its final value. (The last
# epoch's val_acc would tell TPE about a trial that fell back after its best epoch a number no
# ranking uses.) A diverged trial's last report gives it 0.0: the worst, never a candidate.
TRIAL_METRIC = "best_val_acc"

# the confirmation's size when --confirm-top / --confirm-seeds are not given: (K, S)
CONFIRM_TOP, CONFIRM_SEEDS = 3, 3
SMOKE_CONFIRM_TOP, SMOKE_CONFIRM_SEEDS = 1, 2

# --sampler's choices (each one's Optuna settings: tune/samplers.py) and what a title adds for
# each but the default, so a table of a search that proposed otherwise is never mistaken for the
# default one. `tpe` is the default by bench/search_efficiency.py (tune/samplers.py says why).
SAMPLERS = ("tpe", "tpe-mv", "tpe-independent", "random")
SAMPLER_NOTES = {"tpe": "", "tpe-mv": "grouped TPE, scaled random start",
                 "tpe-independent": "independent TPE", "random": "random proposals"}
SCHEDULERS = ("asha", "none")
# --placement: Ray's placement group strategies for a multi-worker trial's workers
PLACEMENTS = {"pack": "PACK", "spread": "SPREAD"}


# Recorded (search.json's `scheduler`, report --json) for `--scheduler asha` when ASHA has no
# rung below a trial's last epoch: it is there, but it can never stop a trial.
INERT_ASHA = "asha_inert"


def algorithm_note(sampler: str = "tpe", scheduler: str = "asha") -> str:
    """What a title adds when the search ran without the default TPE or without ASHA (empty
    for the default), so a table of a baseline search is never mistaken for the default one.
    `scheduler` is what ran (`scheduler_ran`): an inert ASHA is named as such."""
    stopping = {"asha": [], INERT_ASHA: ["ASHA inert: no rung below the last epoch, no early "
                                         "stopping"]}.get(scheduler, ["no early stopping"])
    proposing = SAMPLER_NOTES.get(sampler, sampler)
    parts = ([proposing] if proposing else []) + stopping
    return f" ({', '.join(parts)})" if parts else ""


def asha_rungs(grace_period: float, reduction_factor: float, max_t: float) -> list[float]:
    """The epochs at which ASHA may stop a trial: Ray's milestones below max_t (a trial ends
    at max_t anyway). Empty when the grace period reaches max_t: ASHA then stops nothing."""
    if grace_period <= 0 or reduction_factor <= 1 or max_t <= grace_period:
        return []
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)  # as Ray's
    return [grace_period * reduction_factor**k for k in range(count)
            if grace_period * reduction_factor**k < max_t]


def scheduler_ran(scheduler: str, budget: Budget, epochs_per_trial: int) -> str:
    """What really stopped trials: `scheduler` as asked, or INERT_ASHA when ASHA's grace period
    (clipped to --max-epochs) leaves it no rung below a trial's last epoch."""
    if scheduler == "asha" and not asha_rungs(budget.grace_period, budget.reduction_factor,
                                              epochs_per_trial):
        return INERT_ASHA
    return scheduler


@dataclass
class Resources:
    gpus: float
    gpus_per_trial: float  # per worker when workers_per_trial > 1
    cpus_per_trial: float  # per worker when workers_per_trial > 1
    slots: int
    workers_per_trial: int = 1
    placement: str = "pack"

    @property
    def gpus_per_group(self) -> float:
        """What one trial holds in all: its workers' GPUs together."""
        return self.gpus_per_trial * self.workers_per_trial


@dataclass
class Budget:
    trials: int
    max_epochs: int
    grace_period: int
    reduction_factor: float


@dataclass
class SearchOutcome:
    experiment: str
    summary: list[dict[str, Any]]
    best: dict[str, Any] | None
    interrupted: bool = False  # Ctrl-C: results so far written, resumable


class SearchInterrupted(Exception):
    """A second Ctrl-C stopped the driver at once; the experiment stays resumable."""

    def __init__(self, experiment: str) -> None:
        super().__init__(experiment)
        self.experiment = experiment


class StorageStopped(Exception):
    """The storage refused a write part-way (full, read-only, gone): the search stopped there.

    Writes are atomic, so every file written before is whole; once search.json exists the
    experiment is resumable, and the message says how.
    """

    def __init__(self, experiment: str, location: str, reason: str, started: bool) -> None:
        then = (f"what it wrote before is kept in {experiment}; free space (or make it "
                f"writable), then continue with: dnet-tune search --resume {experiment}"
                if started else "the search did not start; free space (or make it writable) "
                                "and run it again")
        super().__init__(f"the storage refused a write: cannot write '{location}' ({reason}); "
                         f"{then}")
        self.experiment = experiment


def check_arguments(req: SearchRequest) -> None:
    g = req.gpus_per_trial
    if g is not None and (g <= 0 or (g > 1 and g != int(g))):
        raise UserError(f"--gpus-per-trial must be a fraction in (0, 1] or a whole number of "
                        f"GPUs, got {g:g}")
    if req.gpus is not None and req.gpus < 0:
        raise UserError(f"--gpus must be >= 0, got {req.gpus:g}")
    if req.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {req.cpus_per_trial:g}")
    if req.sampler not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, got '{req.sampler}'")
    if req.scheduler not in SCHEDULERS:
        raise UserError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, "
                        f"got '{req.scheduler}'")
    if req.warm_start < 0:
        raise UserError(f"--warm-start must be >= 0, got {req.warm_start}")
    for flag, v in (("--trials", req.trials), ("--max-epochs", req.max_epochs),
                    ("--grace-period", req.grace_period)):
        if v is not None and v < 1:
            raise UserError(f"{flag} must be >= 1, got {v}")
    if req.workers_per_trial < 1:
        raise UserError(f"--workers-per-trial must be >= 1, got {req.workers_per_trial}")
    if req.placement not in PLACEMENTS:
        raise UserError(f"--placement must be one of {', '.join(PLACEMENTS)}, "
                        f"got '{req.placement}'")
    if req.max_failures < 0:
        raise UserError(f"--max-failures must be >= 0, got {req.max_failures}")
    if req.wait_for_gpus < 0:
        raise UserError(f"--wait-for-gpus must be >= 0 seconds, got {req.wait_for_gpus:g}")
    if req.wait_for_gpus > 0 and not req.gpus:
        raise UserError("--wait-for-gpus needs --gpus N: the number of GPUs to wait for")
    if req.reduction_factor is not None and req.reduction_factor <= 1:
        raise UserError(f"--reduction-factor must be > 1, got {req.reduction_factor:g}")
    for flag, v in (("--confirm-top", req.confirm_top), ("--confirm-seeds", req.confirm_seeds)):
        if v is not None and v < 1:
            raise UserError(f"{flag} must be >= 1, got {v}")
    if req.methods is not None:
        if not req.methods or any(not m for m in req.methods):
            raise UserError("--methods needs a comma-separated list of method names, e.g. "
                            "--methods difficulty_net,ce")
        twice = sorted({m for m in req.methods if req.methods.count(m) > 1})
        if twice:
            raise UserError(f"--methods names {twice[0]} twice")
    if req.name is not None and (not req.name or "/" in req.name or req.name.startswith(".")):
        raise UserError(f"--name '{req.name}' must be a plain directory name")


def trial_slots(total: float, per_trial: float) -> int:
    """How many trials fit in `total` units at `per_trial` each (float-safe: 1/0.1 is 9.99...)."""
    return math.floor(total / per_trial + 1e-9)


def gpus_per_trial(req: SearchRequest) -> float:
    return 1.0 if req.gpus_per_trial is None else float(req.gpus_per_trial)


def plan_resources(req: SearchRequest, cluster: dict[str, float],
                   nodes: list[dict[str, float]] | None = None) -> Resources:
    """Trial slots from the request, checked against what the cluster really has.

    With --workers-per-trial N > 1 a slot is a group of N workers, each with the per-trial
    resources; `nodes` (each alive node's resources) decides whether one group can be placed.
    """
    have_gpu = float(cluster.get("GPU", 0.0))
    have_cpu = float(cluster.get("CPU", 0.0))
    workers = req.workers_per_trial
    gpus = have_gpu if req.gpus is None else float(req.gpus)
    if gpus > have_gpu:
        raise UserError(f"--gpus {gpus:g} asks for more GPUs than the cluster has "
                        f"({have_gpu:g}); pass --gpus {have_gpu:g} or fewer")
    if gpus == 0 and req.gpus_per_trial is not None:
        raise UserError("--gpus-per-trial needs GPUs, but the search uses none (--gpus 0 or a "
                        "cluster without GPUs)")
    if gpus > 0:
        gpt = gpus_per_trial(req)
        if gpt > gpus:
            raise UserError(f"--gpus-per-trial {gpt:g} is more than --gpus {gpus:g}")
        slots = trial_slots(gpus, gpt * workers)
    else:
        gpt = 0.0
        slots = trial_slots(have_cpu, req.cpus_per_trial * workers)
    if req.cpus_per_trial > have_cpu:
        raise UserError(f"--cpus-per-trial {req.cpus_per_trial:g} is more than the cluster's "
                        f"{have_cpu:g} CPUs")
    if workers > 1:
        slots = min(slots, group_slots(req, gpt, nodes or [cluster]))
    if slots < 1:
        raise UserError("no trial fits on this cluster with the requested resources")
    return Resources(gpus, gpt, req.cpus_per_trial, slots, workers, req.placement)


def _workers_on(node: dict[str, float], gpw: float, cpw: float) -> int:
    """How many workers of `gpw` GPUs and `cpw` CPUs one node holds."""
    fit = trial_slots(float(node.get("CPU", 0.0)), cpw)
    if gpw > 0:
        fit = min(fit, trial_slots(float(node.get("GPU", 0.0)), gpw))
    return fit


def group_slots(req: SearchRequest, gpw: float, nodes: list[dict[str, float]]) -> int:
    """How many groups of --workers-per-trial workers the nodes hold at once; one line when not
    even one: PACK puts a group on one node, so that node must hold all of it; SPREAD places
    the workers on as many nodes as it can, so each worker must fit a node and the nodes
    together must hold the group."""
    n, cpw = req.workers_per_trial, req.cpus_per_trial
    each = f"{cpw:g} CPU{'s' if cpw != 1 else ''}" + (f" and {gpw:g} GPU{'s' if gpw != 1 else ''}"
                                                      if gpw > 0 else "")
    fits = [_workers_on(node, gpw, cpw) for node in nodes]
    most = max(fits, default=0)
    if req.placement == "pack":
        if most < n:
            raise UserError(f"--workers-per-trial {n} with {each} per worker does not fit on one "
                            f"node (the largest holds {most} such workers); lower "
                            f"--workers-per-trial or --cpus-per-trial/--gpus-per-trial, or pass "
                            f"--placement spread to place the workers on several nodes")
        return sum(f // n for f in fits)
    if most < 1:
        raise UserError(f"one worker with {each} fits on no node of the cluster; lower "
                        f"--cpus-per-trial/--gpus-per-trial")
    if sum(fits) < n:
        raise UserError(f"--workers-per-trial {n} with {each} per worker does not fit on the "
                        f"cluster (its nodes hold {sum(fits)} such workers in all); lower "
                        f"--workers-per-trial or --cpus-per-trial/--gpus-per-trial")
    return sum(fits) // n


class HasBudgets(Protocol):
    budget: Budget
    smoke: Budget


# Sampled per trial these would give trials of different lengths under one ASHA max_t.
LENGTH_KEYS = ("train.epochs", "stage2.enabled", "stage2.epochs")


def run_epochs(base: dict[str, Any]) -> int:
    """Epochs of a whole trial of the base config (`config.total_epochs`: stage 1, the budget's
    max_epochs, then stage 2 when enabled; the length keys are never sampled, `LENGTH_KEYS`).

    ASHA's max_t and the finished/stopped status use this, so stage 2 is never cut off.
    """
    return total_epochs(config_from_dict(base))


def stage1_epochs(base: dict[str, Any]) -> int | None:
    """The last epoch of stage 1 when a trial has a stage 2 after it; None without one."""
    stage2 = base.get("stage2") or {}
    return int(base["train"]["epochs"]) if stage2.get("enabled") else None


def budget_for(req: SearchRequest, space: HasBudgets) -> Budget:
    """The space file's budget (or its smoke budget), with the flags that override it."""
    default = space.smoke if req.smoke else space.budget
    max_epochs = req.max_epochs or default.max_epochs
    return Budget(trials=req.trials or default.trials, max_epochs=max_epochs,
                  grace_period=min(req.grace_period or default.grace_period, max_epochs),
                  reduction_factor=req.reduction_factor or default.reduction_factor)


@dataclass
class Confirmation:
    top: int  # K: configs per method
    seeds: list[int]  # S fresh seeds, the same for every method (paired comparisons)


def confirmation_for(req: SearchRequest) -> Confirmation | None:
    """K and S from the flags (smoke: 1 and 2); seeds the search never trained with."""
    if not req.confirm:
        return None
    top = req.confirm_top or (SMOKE_CONFIRM_TOP if req.smoke else CONFIRM_TOP)
    count = req.confirm_seeds or (SMOKE_CONFIRM_SEEDS if req.smoke else CONFIRM_SEEDS)
    return Confirmation(top, [req.seed + 1 + i for i in range(count)])


def experiment_name(req: SearchRequest, methods: list[str]) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    what = methods[0] if len(methods) == 1 else f"{len(methods)}methods"
    return req.name or f"{req.dataset}-{what}-{stamp}"
