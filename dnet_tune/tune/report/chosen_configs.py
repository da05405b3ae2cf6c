"""Chosen configs as files and as tables: best/<method>.yaml, best_config.yaml, export, report.

Every number here comes from `compare` over the experiment's own rows, so the table printed at
the end of a search, `report` and `export` always agree.
"""

from __future__ import annotations

import contextlib
import math
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from dnet_tune.errors import DamagedFile, UserError
from dnet_tune.fileio import atomic_write, json_safe
from dnet_tune.run import PROVENANCE_END, PROVENANCE_KEY
from dnet_tune.tune.driver import effective_status
from dnet_tune.tune.plan import Budget, scheduler_ran
from dnet_tune.tune.report import compare
from dnet_tune.tune.results import compute_by_method, load_experiment, sampled_values
from dnet_tune.tune.storage import exists, join, list_dirs, write_bytes
from dnet_tune.yamlio import dump_yaml


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("dnet-tune", "torch", "ray", "optuna", "pyarrow", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def git_sha() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return sha.stdout.strip() or None if sha.returncode == 0 else None


def scheduler_of(meta: dict[str, Any]) -> str:
    """What stopped trials (`plan.scheduler_ran`): search.json's record, or for an experiment
    written before it was recorded, worked out from its request and budget."""
    if meta.get("scheduler"):
        return str(meta["scheduler"])
    asked = str(meta.get("request", {}).get("scheduler", "asha"))
    try:
        budget = Budget(**meta["budget"])
    except (KeyError, TypeError):
        return asked
    return scheduler_ran(asked, budget, int(meta.get("epochs_per_trial") or budget.max_epochs))


def comparison(meta: dict[str, Any], summary: list[dict[str, Any]],
               confirm: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                         dict[str, Any] | None]:
    """The final table's rows (one per method, in the search's order) and DN vs best baseline."""
    methods = meta.get("methods") or [meta.get("method")]
    top = int(meta.get("confirm", {}).get("top", 1))
    # a running or interrupted search has no totals yet: what its rows show so far
    res = meta.get("resources", {})
    spent = meta.get("compute") or compute_by_method(
        summary, confirm, float(res.get("gpus_per_trial", 0.0))
        * int(res.get("workers_per_trial", 1)))
    rows = [r for m in methods
            if (r := compare.method_row(m, summary, confirm, top, spent.get(m, {}))) is not None]
    return rows, compare.dn_versus_best_baseline(rows)


def _trial_row(summary: list[dict[str, Any]], trial_id: str) -> dict[str, Any]:
    return next(r for r in summary if r["trial_id"] == trial_id)


def method_config(exp: str, meta: dict[str, Any], summary: list[dict[str, Any]],
                  row: dict[str, Any]) -> str:
    """The method's chosen config as a `train --config` file: the first confirmation seed's run
    (or the search trial itself), with what it was chosen on and how it did."""
    trial = _trial_row(summary, row["trial_id"])
    config = yaml.safe_load(trial["config_yaml"])
    seed = row["seeds"][0] if row["seeds"] else config["train"]["seed"]
    config["train"]["seed"] = seed
    provenance = {
        "experiment": exp, "dataset": meta.get("dataset"), "method": row["method"],
        "trial_id": row["trial_id"], "search_epoch": trial["best_epoch"],
        "search_val_acc": trial["best_val_acc"],
        "confirmed": row["confirmed"], "seeds": row["seeds"],
        "val_mean": row["val_mean"], "test_mean": row["test_mean"],
        "test_std": row["test_std"], "test_ci95": row["test_ci95"],
        "versions": meta.get("versions", versions()), "git_sha": meta.get("git_sha"),
        # CPU results depend on it: the count the trial ran with (null: not recorded then)
        "threads": config["train"].get("threads"),
        PROVENANCE_END: f"train with this file reproduces the run with seed {seed}; the other "
                        f"seeds differ only in train.seed. Chosen on validation accuracy, never "
                        f"on test. This block is ignored by train.",
    }
    return dump_yaml({**config, PROVENANCE_KEY: json_safe(provenance)})


def write_bests(exp: str, meta: dict[str, Any], summary: list[dict[str, Any]],
                rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """best/<method>.yaml for every method, best_config.yaml for the winner; the winner's row."""
    for row in rows:
        write_bytes(join(exp, "best", f"{row['method']}.yaml"),
                    method_config(exp, meta, summary, row).encode())
    best = compare.winner(rows)
    if best is not None:
        write_bytes(join(exp, "best_config.yaml"),
                    method_config(exp, meta, summary, best).encode())
    return best


def export(exp: str, out: str, trial_id: str | None = None,
           method: str | None = None) -> tuple[dict[str, Any], str]:
    """Write a config of `exp` to `out`: the winner's, a method's chosen one, or one trial's.

    Also returns the experiment's status: a running or interrupted search's choice is the best
    so far, which the caller says."""
    meta, summary, confirm = load_experiment(exp)
    rows, _ = comparison(meta, summary, confirm)
    if trial_id is not None:
        trial = next((r for r in summary if r["trial_id"] == trial_id), None)
        if trial is None:
            ids = ", ".join(r["trial_id"] for r in summary)
            raise UserError(f"no trial '{trial_id}' in this experiment; trials: {ids}")
        if trial["best_val_acc"] is None:
            raise UserError(f"trial '{trial_id}' reported no epoch; pick another")
        row = {"method": trial["method"], "trial_id": trial_id, "confirmed": False, "seeds": [],
               "val_mean": trial["best_val_acc"], "test_mean": trial["test_acc_at_best"],
               "test_std": math.nan, "test_ci95": math.nan}
    elif method is not None:
        found = next((r for r in rows if r["method"] == method), None)
        if found is None:
            have = ", ".join(r["method"] for r in rows) or "none"
            raise UserError(f"method '{method}' has no result in this experiment; methods: "
                            f"{have}")
        row = found
    else:
        best = compare.winner(rows)
        if best is None:
            raise UserError("no trial of this experiment reported a result; nothing to export")
        row = best
    text = method_config(exp, meta, summary, row)
    atomic_write(out, lambda p: p.write_text(text))
    return row, effective_status(meta)


def _experiment_report(exp: str) -> dict[str, Any] | None:
    meta, summary, confirm = load_experiment(exp)
    status = effective_status(meta)
    rows, diff = comparison(meta, summary, confirm)
    if not rows and status == "finished":
        return None
    virtual = frozenset(meta.get("virtual_params", []))
    for row in rows:
        row["config"] = sampled_values(_trial_row(summary, row["trial_id"]), virtual)
    best = compare.winner(rows)
    budget = meta.get("budget", {}).get("trials", 0) * len(meta.get("methods") or [1])
    request = meta.get("request", {})
    return {"experiment": exp, "dataset": meta.get("dataset"), "rows": rows,
            "sampler": request.get("sampler", "tpe"),
            "scheduler": scheduler_of(meta),
            "difference": diff, "winner": best["method"] if best else None,
            "status": status, "trials_ended": sum(r["status"] != "unfinished" for r in summary),
            "trials_budget": budget}


def report(storage: str, experiment: str | None = None,
           skipped: list[DamagedFile] | None = None) -> list[dict[str, Any]]:
    """The comparison of one experiment, or of every experiment under `storage`.

    Over a storage, an experiment with a damaged file is left out and its error appended to
    `skipped` when the caller passes that list: one bad copy should not hide every other
    experiment's report. Without it (or for one named experiment) the error propagates.
    """
    if experiment is not None:
        found = _experiment_report(experiment)
        return [found] if found else []
    out = []
    for exp in list_dirs(storage):
        if not exists(join(exp, "search.json")):
            continue
        try:
            found = _experiment_report(exp)
        except DamagedFile as exc:
            if skipped is None:
                raise
            skipped.append(exc)
            continue
        if found:
            out.append(found)
    return out
