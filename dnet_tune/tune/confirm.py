"""Confirmation: the top configs of every method retrained from scratch with fresh seeds.

A search picks its best trial on one seed and a noisy validation split, so the best trial's val
accuracy is biased upwards (the winner's curse). Retraining the top K configs of every method
with S seeds the search never used, on the same cluster and resources, gives numbers that can be
compared across methods with their uncertainty. Each run selects its epoch on V, as always.

Each finished run is handed to `on_row` at once (the driver rewrites confirm.parquet), so a
resumed search skips the runs already done and spends the confirmation budget exactly once. A
Ctrl-C cancels the runs still going (they restart from scratch on a resume).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from dnet_tune.dotted import merge
from dnet_tune.train import Trainer
from dnet_tune.tune.confirm_row import SELECTED, fitted_row
from dnet_tune.tune.faults import interrupt
from dnet_tune.tune.plan import Resources
from dnet_tune.tune.report.compare import candidates
from dnet_tune.tune.results import TrialRecord
from dnet_tune.tune.trainable import DataHandle, trial_config
from dnet_tune.tune.view import ProgressLine


@dataclass
class Job:
    method: str
    trial_id: str
    rank: int
    seed: int
    config: dict[str, Any]


def jobs_for(summary: list[dict[str, Any]], records: dict[str, TrialRecord],
             methods: list[str], top: int, seeds: list[int]) -> list[Job]:
    """Interleaved by seed and rank, so every method advances together on a shared cluster."""
    out = []
    for seed in seeds:
        for rank in range(top):
            for method in methods:
                ranked = candidates(summary, method, top)
                if rank < len(ranked):
                    rec = records[ranked[rank]["trial_id"]]
                    cfg = merge(rec.resolved, {"train": {"seed": seed}})
                    out.append(Job(method, rec.trial_id, rank + 1, seed, cfg))
    return out


def _confirm_run(data: DataHandle, cfg: dict[str, Any]) -> dict[str, Any]:
    return fitted_row(Trainer(trial_config(cfg, {}, frozenset()), data.get()))


def key(row: dict[str, Any] | Job) -> tuple[str, str, int]:
    """A confirmation run's identity: (method, trial, seed)."""
    if isinstance(row, Job):
        return row.method, row.trial_id, row.seed
    return str(row["method"]), str(row["trial_id"]), int(row["seed"])


def run_jobs(jobs: list[Job], data: DataHandle, res: Resources, progress: ProgressLine,
             on_row: Callable[[list[dict[str, Any]]], None] | None = None,
             exp: str | None = None) -> list[dict[str, Any]]:
    """Every job as a Ray task with a trial's resources; rows in job order (only the finished
    ones if a Ctrl-C came first). `on_row` gets the rows so far after each finished run.

    With --workers-per-trial N > 1 each job is a Ray Train group of N workers like a trial's
    (a task that holds nothing itself drives it; its Ray Train files go under `exp`)."""
    if res.workers_per_trial > 1:
        from dnet_tune.tune.train_trial import confirm_group

        group = ray.remote(confirm_group).options(num_cpus=0, max_retries=0)
        assert exp is not None, "a group's confirmation runs need the experiment's folder"
        refs = {group.remote(data, job.config, res, exp): i for i, job in enumerate(jobs)}
    else:
        task = ray.remote(_confirm_run).options(num_cpus=res.cpus_per_trial,
                                                num_gpus=res.gpus_per_trial, max_retries=0)
        refs = {task.remote(data, job.config): i for i, job in enumerate(jobs)}
    rows: list[dict[str, Any] | None] = [None] * len(jobs)
    pending = list(refs)
    start = time.monotonic()
    with progress:
        while pending:
            if interrupt.requested():
                for waiting in pending:
                    ray.cancel(waiting, force=True)
                progress.note(f"stopped: {len(pending)} confirmation runs cancelled; they run "
                              f"again on a resume")
                break
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in done:
                i = refs[ref]
                job = jobs[i]
                head = {"method": job.method, "trial_id": job.trial_id, "rank": job.rank,
                        "seed": job.seed}
                try:
                    run: dict[str, Any] = ray.get(ref)
                    rows[i] = {**head, **run, "error": ""}
                except ray.exceptions.RayError as exc:
                    error = str(exc).strip().splitlines()[-1]
                    rows[i] = {**head, **dict.fromkeys(SELECTED), "error": error}
                    progress.note(f"[red]confirmation run {job.method} {job.trial_id} seed "
                                  f"{job.seed} failed:[/] {error}")
                progress.advance(time.monotonic() - start)
                if on_row is not None:
                    on_row([r for r in rows if r is not None])
    return [r for r in rows if r is not None]
