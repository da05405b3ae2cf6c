"""Confirmation: the top configs of every method retrained from scratch with fresh seeds.

A search picks its best trial on one seed and a noisy validation split, so the best trial's val
accuracy is biased upwards (the winner's curse). Retraining the top K configs of every method
with S seeds the search never used, on the same cluster and resources, gives numbers that can be
compared across methods with their uncertainty. Each run selects its epoch on V, as always.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray

from dnet_tune.dotted import merge
from dnet_tune.tune.compare import candidates
from dnet_tune.tune.plan import Resources
from dnet_tune.tune.results import TrialRecord
from dnet_tune.tune.trainable import DataHandle, placement, trial_config
from dnet_tune.tune.view import ProgressLine

SELECTED = ("val_acc", "val_many", "val_medium", "val_few", "test_acc", "test_many",
            "test_medium", "test_few", "test_class_acc")


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
    from dnet_tune.train import Trainer

    trainer = Trainer(trial_config(cfg, {}, frozenset()), data.get())
    seconds = 0.0
    for metrics in trainer.fit():
        seconds += float(metrics["epoch_time_s"])
    best = trainer.best or {}
    return {**{k: best.get(k) for k in SELECTED}, "selected_epoch": best.get("epoch"),
            "epochs": trainer.epoch, "run_seconds": seconds, **placement(trainer.device)}


def run_jobs(jobs: list[Job], data: DataHandle, res: Resources,
             progress: ProgressLine) -> list[dict[str, Any]]:
    """Every job as a Ray task with a trial's resources; rows in job order."""
    task = ray.remote(_confirm_run).options(num_cpus=res.cpus_per_trial,
                                            num_gpus=res.gpus_per_trial, max_retries=0)
    refs = {task.remote(data, job.config): i for i, job in enumerate(jobs)}
    rows: list[dict[str, Any] | None] = [None] * len(jobs)
    pending = list(refs)
    start = time.monotonic()
    with progress:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = refs[ref]
                job = jobs[i]
                head = {"method": job.method, "trial_id": job.trial_id, "rank": job.rank,
                        "seed": job.seed}
                try:
                    rows[i] = {**head, **ray.get(ref), "error": ""}
                except ray.exceptions.RayError as exc:
                    error = str(exc).strip().splitlines()[-1]
                    rows[i] = {**head, **dict.fromkeys(SELECTED), "error": error}
                    progress.note(f"[red]confirmation run {job.method} {job.trial_id} seed "
                                  f"{job.seed} failed:[/] {error}")
                progress.advance(time.monotonic() - start)
    return [r for r in rows if r is not None]
