"""The search driver: check everything, connect to Ray, run the Tuner, write the results.

Order matters for "bad input writes nothing": arguments, the space, the config and the data are
checked before Ray starts, and the cluster's resources and the storage before any trial is
launched. search.json is written first (status `running`), the tables while trials run
(`live_results`), then the confirmation rows one by one, and search.json again at the end
(`finished`, or `interrupted` after a Ctrl-C). `--resume` rebuilds the same request from
search.json (`resume`) and continues Tune's own experiment instead of starting one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from dnet_tune.config import config_to_dict, parse_set
from dnet_tune.dotted import flatten, merge
from dnet_tune.errors import UserError
from dnet_tune.tune import confirm, driver, results, runner, storage
from dnet_tune.tune.faults import interrupt, resume, studies
from dnet_tune.tune.plan import (
    LENGTH_KEYS,
    Budget,
    Confirmation,
    Resources,
    SearchInterrupted,
    SearchOutcome,
    SearchRequest,
    algorithm_note,
    budget_for,
    check_arguments,
    confirmation_for,
    experiment_name,
    plan_resources,
    run_epochs,
)
from dnet_tune.tune.report import chosen_configs
from dnet_tune.tune.report.text import comparison_table, difference_line
from dnet_tune.tune.sampling import check_against_config
from dnet_tune.tune.space import SearchSpace, default_space_path
from dnet_tune.tune.space_file import load_space
from dnet_tune.tune.view import ProgressLine, SearchView


def find_space(req: SearchRequest) -> SearchSpace:
    if req.space:
        return load_space(req.space)
    local = Path("search_spaces") / f"{req.dataset}.yaml"
    return load_space(local if local.is_file() else default_space_path(req.dataset))


def base_config(req: SearchRequest, space: SearchSpace, budget: Budget,
                method: str) -> dict[str, Any]:
    from dnet_tune.run import resolve_config

    data = {"data_dir": req.data_dir} if req.data_dir else {}
    cfg = resolve_config(dataset=req.dataset, recipe=req.recipe, sets=req.sets,
                         overrides={"method": {"name": method}, "data": data})
    base = merge(config_to_dict(cfg), space.fixed)
    # a trial's intra-op threads are part of its config (what ran is what an export replays):
    # `auto` is the trial's CPUs, as Ray's OMP_NUM_THREADS had it
    threads = base["train"]["threads"]
    train = {"epochs": budget.max_epochs, "seed": req.seed,
             "threads": max(1, int(req.cpus_per_trial)) if threads == "auto" else threads}
    smoke = {"optim": {"warmup_epochs": 0}} if req.smoke else {}  # as run.smoke_overrides
    return merge(merge(base, {"train": train}), smoke)


def resolve_methods(req: SearchRequest, space: SearchSpace) -> list[str]:
    """--methods, else Difficulty-Net and the space file's baselines; every name registered."""
    from dnet_tune.method.methods import METHODS

    methods = req.methods or ["difficulty_net", *space.baselines]
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
    base: dict[str, Any]
    dataset: Any
    confirmation: Confirmation | None
    fingerprint: dict[str, Any]
    pinned: list[str]
    resumed: dict[str, Any] | None  # search.json of the experiment being resumed


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
    from dnet_tune.config import config_from_dict
    from dnet_tune.data.registry import DATASETS, build_dataset

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
    for method in methods:  # every method's configs are valid before anything runs
        base = base_config(req, space, budget, method)
        check_against_config(space, base, method, samples=3, seed=req.seed)
    if base["data"]["val_per_class"] < 1:
        raise UserError("the search selects on the validation split; set data.val_per_class "
                        ">= 1 (the 'paper' profile has none: use it with train only)")
    confirmation = confirmation_for(req)
    fp = resume.fingerprint(space_path, budget, methods, req.seed, confirmation, req.dataset,
                            req.sets)
    if resumed is not None:
        resume.check_fingerprint(resumed["fingerprint"], fp, space_path)
    dataset = build_dataset(config_from_dict(base).data)  # missing data fails before Ray
    return CheckedSearch(req, space, methods, budget, base, dataset, confirmation, fp, pinned,
                         resumed)


def run_search(req: SearchRequest, console: Console) -> SearchOutcome:
    plan = plan_search(req)
    req = plan.req

    import ray

    from dnet_tune.tune.preflight import check_cluster, check_storage
    from dnet_tune.tune.ray_session import connect, release_gpus, wait_for_gpus

    root = storage.normalise(req.storage)
    name = req.name if plan.resumed is not None and req.name else experiment_name(
        req, plan.methods)
    exp = storage.join(root, name)
    if plan.resumed is None and storage.exists(exp):
        raise UserError(f"experiment '{exp}' already exists; pass another --name (or "
                        f"--resume {exp} to continue it)")
    check_storage(root)
    local = connect(req.address)
    try:
        check_cluster(root)
        wait_for_gpus(req, console)
        res = plan_resources(req, ray.cluster_resources())
        if plan.pinned:
            console.print(f"fixed by --set, not searched: {', '.join(plan.pinned)}")
        return _execute(plan, res, name, root, exp, console)
    finally:
        if req.wait_for_gpus > 0 and ray.is_initialized():
            release_gpus()
        if local is not None:
            local.shutdown()


def _start_meta(plan: CheckedSearch, res: Resources, name: str) -> dict[str, Any]:
    from dnet_tune.data.registry import summary as data_summary

    req, conf = plan.req, plan.confirmation
    if plan.resumed is not None:
        earlier = plan.resumed.get("resumes", [])
        return {**plan.resumed, "status": "running", "driver": driver.driver_info(),
                "resumes": [*earlier, {"at": driver.driver_info()["started"]}]}
    db = studies.masked(req.optuna_storage) or (
        studies.JOURNAL if studies.default_location(req.storage) else None)
    return {"experiment": name, "dataset": req.dataset, "methods": plan.methods,
            "space": str(Path(plan.space.path).resolve()), "budget": vars(plan.budget),
            "epochs_per_trial": run_epochs(plan.base),  # max_epochs + stage 2's, if on
            "seed": req.seed,
            "confirm": ({"top": conf.top, "seeds": conf.seeds} if conf else {"top": 1}),
            "virtual_params": sorted({n for m in plan.methods
                                      for n in plan.space.virtual_names(m)}),
            "resources": vars(res), "storage": req.storage, "status": "running",
            "request": resume.stored_request(req), "fingerprint": plan.fingerprint,
            "optuna_storage": db, "driver": driver.driver_info(),
            # per-class counts and shot groups: the report sorts classes by them without
            # needing the dataset on the machine that reads the results
            "data": data_summary(plan.dataset),
            "versions": chosen_configs.versions(), "git_sha": chosen_configs.git_sha()}


def _warm_start(plan: CheckedSearch, root: str, exp: str, console: Console) -> Any:
    if plan.req.warm_start < 1:
        return None
    from dnet_tune.tune import warm_start

    warm = warm_start.find(root, plan.req.dataset, plan.methods, plan.space,
                           plan.req.warm_start, exclude=exp)
    console.print(warm.line(plan.req.dataset, root))
    return warm


def _existing_confirm(exp: str) -> list[dict[str, Any]]:
    path = storage.join(exp, "confirm.parquet")
    return storage.read_table(path) if storage.exists(path) else []


def _execute(plan: CheckedSearch, res: Resources, name: str, root: str, exp: str,
             console: Console) -> SearchOutcome:
    import ray

    from dnet_tune.tune.trainable import DataHandle

    req, methods, budget = plan.req, plan.methods, plan.budget
    journal = None if req.optuna_storage else studies.default_location(exp)
    if plan.resumed is not None:
        studies.repair_journal(journal)
    optuna_storage = studies.open_storage(req.optuna_storage, journal)
    meta = _start_meta(plan, res, name)
    warm = _warm_start(plan, root, exp, console) if plan.resumed is None else None
    if warm is not None:
        meta["warm_start"] = warm.record()
    meta_path = storage.join(exp, "search.json")
    results.write_json(meta_path, meta)
    data = DataHandle(ray.put(plan.dataset))  # the one object-store copy every trial reads
    view = SearchView(console, f"{name}: {req.dataset} · {', '.join(methods)}"
                               f"{algorithm_note(req.sampler, req.scheduler)}",
                      budget.trials * len(methods))
    spec = runner.TunerSpec(plan.space, methods, req.seed, budget, plan.base, res, name, root,
                            req.reuse_actors, req.max_failures, optuna_storage,
                            warm.points if warm is not None else {}, req.sampler,
                            req.scheduler)
    run: runner.TunerRun | None = None
    confirm_rows: list[dict[str, Any]] = _existing_confirm(exp) if plan.resumed else []
    with interrupt.catching(view.note):
        try:
            if plan.resumed is not None:
                run = runner.restore_tuner(spec, data, view, exp)
            else:
                run = runner.build_tuner(spec, data, view, exp)
            runner.fit_quietly(run, view)
            records = runner.collect(run)
            summary = results.summary_rows(records, run_epochs(plan.base))
            results.write_tables(exp, records, summary, confirm_rows)
            if plan.resumed is not None and run.scheduler is not None:
                meta["resumes"][-1]["asha_restored"] = run.scheduler.restored
                meta["resumes"][-1]["studies"] = getattr(run.recorder.searcher, "reconciled",
                                                         None)
            if interrupt.requested():
                return _interrupted(meta, meta_path, exp, summary)
            conf = plan.confirmation
            if conf is not None:
                done = {confirm.key(r) for r in confirm_rows}
                jobs = [j for j in confirm.jobs_for(summary, {r.trial_id: r for r in records},
                                                    methods, conf.top, conf.seeds)
                        if confirm.key(j) not in done]
                if jobs:
                    earlier = list(confirm_rows)
                    progress = ProgressLine(
                        console, f"confirming the top {conf.top} of each method with seeds "
                        f"{', '.join(map(str, conf.seeds))}", len(jobs) + len(earlier))
                    progress.done = len(earlier)
                    new = confirm.run_jobs(jobs, data, res, progress, lambda rows: storage.
                                           write_table(storage.join(exp, "confirm.parquet"),
                                                       earlier + rows))
                    confirm_rows = earlier + new
                    if interrupt.requested():
                        return _interrupted(meta, meta_path, exp, summary)
        except KeyboardInterrupt:  # the second Ctrl-C: out now, resumable from what is saved
            if run is not None:
                records = runner.collect(run)
                results.write_tables(exp, records,
                                     results.summary_rows(records, run_epochs(plan.base)), [])
            results.write_json(meta_path, {**meta, "status": "interrupted"})
            raise SearchInterrupted(exp) from None
    meta.update({"compute": results.compute_by_method(summary, confirm_rows,
                                                      res.gpus_per_trial),
                 "peak_running_trials": run.recorder.peak_running, "status": "finished"})
    if optuna_storage is not None:
        # the studies keep the name the experiment started with, even when it was moved
        meta["optuna_trials"] = studies.counts(optuna_storage, meta["experiment"], methods)
    results.write_tables(exp, records, summary, confirm_rows)
    results.write_json(meta_path, meta)
    return _finish(plan, exp, meta, summary, confirm_rows, console)


def _interrupted(meta: dict[str, Any], meta_path: str, exp: str,
                 summary: list[dict[str, Any]]) -> SearchOutcome:
    results.write_json(meta_path, {**meta, "status": "interrupted"})
    return SearchOutcome(exp, summary, None, interrupted=True)


def _finish(plan: CheckedSearch, exp: str, meta: dict[str, Any], summary: list[dict[str, Any]],
            confirm_rows: list[dict[str, Any]], console: Console) -> SearchOutcome:
    conf = plan.confirmation
    rows, diff = chosen_configs.comparison(meta, summary, confirm_rows)
    best = chosen_configs.write_bests(exp, meta, summary, rows)
    if rows:
        how = (f"confirmed: top {conf.top} per method × seeds {', '.join(map(str, conf.seeds))}"
               if conf else "not confirmed: one seed, the search's own")
        console.print(comparison_table(rows, f"{plan.req.dataset}: every method tuned with the "
                                             f"same budget; chosen on val, test reported "
                                             f"({how})"))
        if diff is not None:
            console.print(difference_line(diff))
    if best is not None:
        console.print(f"best: {best['method']} (trial {best['trial_id']}) mean val "
                      f"{100 * best['val_mean']:.2f}% → {storage.join(exp, 'best_config.yaml')}; "
                      f"every method's choice is in {storage.join(exp, 'best')}/")
    return SearchOutcome(exp, summary, best)
