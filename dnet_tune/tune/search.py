"""The search driver: check everything, connect to Ray, run the Tuner, write the results.

Order matters for "bad input writes nothing": arguments, the space, the config and the data are
checked before Ray starts, and the cluster's resources and the storage before any trial is
launched. search.json is written first (status `running`), the tables while trials run
(`live_results`), then the confirmation rows one by one, and search.json again at the end
(`finished`, or `interrupted` after a Ctrl-C). `--resume` rebuilds the same request from
search.json (`resume`) and continues Tune's own experiment instead of starting one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from rich.console import Console

from dnet_tune.console import print_copyable
from dnet_tune.data.registry import summary as data_summary
from dnet_tune.errors import UserError
from dnet_tune.tune import confirm, driver, results, runner, samplers, storage, warm_start
from dnet_tune.tune.checked_search import CheckedSearch, plan_search
from dnet_tune.tune.faults import interrupt, resume, studies
from dnet_tune.tune.plan import (
    Resources,
    SearchInterrupted,
    SearchOutcome,
    SearchRequest,
    StorageStopped,
    algorithm_note,
    experiment_name,
    plan_resources,
    scheduler_ran,
)
from dnet_tune.tune.preflight import check_cluster, check_storage, refused_write
from dnet_tune.tune.ray_session import connect, release_gpus, wait_for_gpus
from dnet_tune.tune.report import chosen_configs
from dnet_tune.tune.report.text import comparison_table, difference_line
from dnet_tune.tune.results import TrialRecord
from dnet_tune.tune.trainable import DataHandle
from dnet_tune.tune.view import ProgressLine, SearchView


def run_search(req: SearchRequest, console: Console) -> SearchOutcome:
    plan = plan_search(req)
    req = plan.req



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
        res = plan_resources(req, ray.cluster_resources(),
                             [n["Resources"] for n in ray.nodes() if n.get("Alive")])
        if plan.pinned:
            console.print(f"fixed by --set, not searched: {', '.join(plan.pinned)}")
        if plan.overridden:
            console.print(f"--set overrides the space's fixed: {'; '.join(plan.overridden)}",
                          soft_wrap=True)
        try:
            return _execute(plan, res, name, root, exp, console)
        except Exception as exc:
            stopped = _storage_stopped(exc, exp)
            if stopped is None:
                raise
            raise stopped from exc
    finally:
        if req.wait_for_gpus > 0 and ray.is_initialized():
            release_gpus()
        if local is not None:
            local.shutdown()


def _scheduler_ran(plan: CheckedSearch) -> str:
    return scheduler_ran(plan.req.scheduler, plan.budget, plan.epochs)


def _storage_stopped(exc: Exception, exp: str) -> StorageStopped | None:
    """A search that died because its storage stopped taking writes, as one resumable line.

    Our own writes say so (`StorageWriteError`); Ray's fail in their own ways (a trial's error
    file cut short by a full disk is read back as an EOFError), so another failure counts as
    the storage's when a small probe write into the experiment is refused too.
    """
    if isinstance(exc, storage.StorageWriteError):
        where, why = exc.location, exc.reason
    elif isinstance(exc, (UserError, SearchInterrupted)):
        return None
    elif (refused := refused_write(exp)) is not None:
        where, why = exp, refused
    else:
        return None
    started = results.mark_interrupted(exp) or storage.exists(
        storage.join(exp, results.SEARCH_JSON))
    return StorageStopped(exp, where, why, started)


def _start_meta(plan: CheckedSearch, res: Resources, name: str) -> dict[str, Any]:
    req, conf = plan.req, plan.confirmation
    if plan.resumed is not None:
        earlier = plan.resumed.get("resumes", [])
        return {**plan.resumed, "status": "running", "driver": driver.driver_info(),
                "scheduler": _scheduler_ran(plan),
                "resumes": [*earlier, {"at": driver.driver_info()["started"]}]}
    db = studies.masked(req.optuna_storage) or (
        studies.JOURNAL if studies.default_location(req.storage) else None)
    sampler = samplers.settings(req.sampler, req.seed, plan.budget.trials, res.slots,
                                len(plan.methods))
    return {"experiment": name, "dataset": req.dataset, "methods": plan.methods,
            "space": str(Path(plan.space.path).resolve()), "budget": vars(plan.budget),
            "epochs_per_trial": plan.epochs,  # max_epochs + stage 2's, if on
            "seed": req.seed, "scheduler": _scheduler_ran(plan),  # asked: request.scheduler
            "sampler": samplers.record(req.sampler, sampler),  # every setting it was built with
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

    warm = warm_start.find(root, plan.req.dataset, plan.methods, plan.space,
                           plan.req.warm_start, exclude=exp)
    console.print(warm.line(plan.req.dataset, root))
    return warm


def _existing_confirm(exp: str) -> list[dict[str, Any]]:
    path = storage.join(exp, "confirm.parquet")
    return storage.read_table(path) if storage.exists(path) else []


@dataclass
class _Search:
    """One search from `_open` to `_close`: what the steps share and fill in."""

    plan: CheckedSearch
    res: Resources
    exp: str
    meta: dict[str, Any]  # search.json as it will be written next
    optuna_storage: Any  # the studies' storage; None: in memory (Ray's searcher snapshot)
    data: Any  # trainable.DataHandle: the dataset's one copy in Ray's object store
    view: SearchView
    spec: runner.TunerSpec
    confirm_rows: list[dict[str, Any]]  # confirm.parquet's rows (a resume's earlier ones first)
    run: runner.TunerRun | None = None
    records: list[TrialRecord] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)

    @property
    def meta_path(self) -> str:
        return storage.join(self.exp, "search.json")


def _execute(plan: CheckedSearch, res: Resources, name: str, root: str, exp: str,
             console: Console) -> SearchOutcome:
    """Open, run the trials, confirm, close. A first Ctrl-C ends it `interrupted` after the
    step it came in; a second one leaves at once, resumable from what was saved."""
    search = _open(plan, res, name, root, exp, console)
    with interrupt.catching(search.view.note):
        try:
            _run_trials(search)
            if interrupt.requested() or not _confirm(search, console):
                return _interrupted(search)
        except KeyboardInterrupt:  # the second Ctrl-C: out now, resumable from what is saved
            if search.run is not None:
                records = runner.collect(search.run)
                results.write_tables(exp, records, results.summary_rows(records, plan.epochs),
                                     [])
            results.write_json(search.meta_path, {**search.meta, "status": "interrupted"})
            raise SearchInterrupted(exp) from None
    _close(search)
    return _finish(plan, exp, search.meta, search.summary, search.confirm_rows, console)


def _open(plan: CheckedSearch, res: Resources, name: str, root: str, exp: str,
          console: Console) -> _Search:
    """The studies' storage, search.json (status `running`), the dataset in Ray's object store,
    the live view and the Tuner's spec."""

    req, methods, budget = plan.req, plan.methods, plan.budget
    journal = None if req.optuna_storage else studies.default_location(exp)
    if plan.resumed is not None:
        studies.repair_journal(journal)
    optuna_storage = studies.open_storage(req.optuna_storage, journal)
    meta = _start_meta(plan, res, name)
    warm = _warm_start(plan, root, exp, console) if plan.resumed is None else None
    if warm is not None:
        meta["warm_start"] = warm.record()
    results.write_json(storage.join(exp, "search.json"), meta)
    data = DataHandle(ray.put(plan.dataset))  # the one object-store copy every trial reads
    view = SearchView(console, f"{name}: {req.dataset} · {', '.join(methods)}"
                               f"{algorithm_note(req.sampler, meta['scheduler'])}",
                      budget.trials * len(methods))
    spec = runner.TunerSpec(
        space=plan.space, methods=methods, seed=req.seed, budget=budget, bases=plan.bases,
        epochs=plan.epochs, resources=res, name=name, storage=root,
        reuse_actors=req.reuse_actors, max_failures=req.max_failures,
        optuna_storage=optuna_storage, warm_start=warm.points if warm is not None else {},
        sampler=req.sampler, scheduler=req.scheduler,
        # a resume builds no sampler (Ray restores the ones it started with); an experiment from
        # before search.json recorded them has none here
        sampler_settings=(meta.get("sampler") or {}).get("settings"))
    return _Search(plan, res, exp, meta, optuna_storage, data, view, spec,
                   confirm_rows=_existing_confirm(exp) if plan.resumed else [])


def _run_trials(search: _Search) -> None:
    """Build (or restore) the Tuner and fit it; then the tables, and what a resume restored."""
    plan = search.plan
    if plan.resumed is not None:
        search.run = runner.restore_tuner(search.spec, search.data, search.view, search.exp)
    else:
        search.run = runner.build_tuner(search.spec, search.data, search.view, search.exp)
    runner.fit_quietly(search.run, search.view)
    search.records = runner.collect(search.run)
    search.summary = results.summary_rows(search.records, plan.epochs)
    results.write_tables(search.exp, search.records, search.summary, search.confirm_rows)
    if plan.resumed is not None and search.run.scheduler is not None:
        searcher = search.run.recorder.searcher
        search.meta["resumes"][-1]["asha_restored"] = search.run.scheduler.restored
        search.meta["resumes"][-1]["studies"] = getattr(searcher, "reconciled", None)
        if searcher is not None:  # the samplers Ray restored: the settings the search began with
            search.meta["resumes"][-1]["samplers"] = samplers.in_use(searcher.searchers)


def _confirm(search: _Search, console: Console) -> bool:
    """The confirmation runs not yet in confirm.parquet, each row written as it finishes;
    False if a Ctrl-C stopped them."""
    conf = search.plan.confirmation
    if conf is None:
        return True
    done = {confirm.key(r) for r in search.confirm_rows}
    jobs = [j for j in confirm.jobs_for(search.summary, {r.trial_id: r for r in search.records},
                                        search.plan.methods, conf.top, conf.seeds)
            if confirm.key(j) not in done]
    if not jobs:
        return True
    earlier = list(search.confirm_rows)
    progress = ProgressLine(console, f"confirming the top {conf.top} of each method with seeds "
                            f"{', '.join(map(str, conf.seeds))}", len(jobs) + len(earlier))
    progress.done = len(earlier)
    path = storage.join(search.exp, "confirm.parquet")
    new = confirm.run_jobs(jobs, search.data, search.res, progress,
                           lambda rows: storage.write_table(path, earlier + rows),
                           exp=search.exp)
    search.confirm_rows = earlier + new
    return not interrupt.requested()


def _close(search: _Search) -> None:
    """search.json `finished`, with the compute spent and the studies' trial counts; the
    tables with the confirmation rows."""
    assert search.run is not None  # _run_trials ran
    meta = search.meta
    meta.update({"compute": results.compute_by_method(search.summary, search.confirm_rows,
                                                      search.res.gpus_per_group),
                 "peak_running_trials": search.run.recorder.peak_running, "status": "finished"})
    if search.optuna_storage is not None:
        # the studies keep the name the experiment started with, even when it was moved
        meta["optuna_trials"] = studies.counts(search.optuna_storage, meta["experiment"],
                                               search.plan.methods)
    results.write_tables(search.exp, search.records, search.summary, search.confirm_rows)
    results.write_json(search.meta_path, meta)


def _interrupted(search: _Search) -> SearchOutcome:
    results.write_json(search.meta_path, {**search.meta, "status": "interrupted"})
    return SearchOutcome(search.exp, search.summary, None, interrupted=True)


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
        print_copyable(console, f"best: {best['method']} (trial {best['trial_id']}) mean val "
                                f"{100 * best['val_mean']:.2f}% → "
                                f"{storage.join(exp, 'best_config.yaml')}; every method's "
                                f"choice is in {storage.join(exp, 'best')}/")
    return SearchOutcome(exp, summary, best)
