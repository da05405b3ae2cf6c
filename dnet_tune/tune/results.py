"""Experiment results as files: Parquet tables, the best config with provenance, report/export.

Layout of `<storage>/<name>/` (beside Ray's own experiment files):
  trials.parquet     one row per trial per reported epoch: trial_id, role, config/*, metrics
  summary.parquet    one row per trial: status, last/best epoch, best val_acc, metrics there,
                     and the trial's complete resolved config (YAML text)
  best_config.yaml   a complete core config for `dnet-tune train --config`, plus provenance
  search.json        what was asked: dataset, method, budget, resources, seed, versions

Storage may be a local path or a URI (see `storage`).
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dnet_tune.errors import UserError
from dnet_tune.io import atomic_write, json_safe
from dnet_tune.tune.sampling import sampled_config_keys
from dnet_tune.tune.storage import (
    exists,
    join,
    list_dirs,
    read_bytes,
    read_table,
    write_bytes,
    write_table,
)
from dnet_tune.yamlio import dump_yaml

SEARCH_ROLE, BASELINE_ROLE = "search", "baseline"
AT_BEST = ("val_acc", "val_many", "val_medium", "val_few", "test_acc", "test_many",
           "test_medium", "test_few")


# ----------------------------------------------------------------------------- recording


@dataclass
class TrialRecord:
    trial_id: str
    role: str
    config: dict[str, Any]  # the flat sampled config
    resolved: dict[str, Any]  # the complete core config
    rows: list[dict[str, Any]] = field(default_factory=list)
    errored: bool = False
    error: str = ""


def trial_rows(records: list[TrialRecord]) -> list[dict[str, Any]]:
    out = []
    for rec in records:
        for row in rec.rows:
            flat = {f"config/{k}": _scalar(v) for k, v in sorted(rec.config.items())}
            out.append({"trial_id": rec.trial_id, "role": rec.role, **flat, **row})
    return out


def _scalar(v: Any) -> Any:
    """Parquet columns need one type: lists (DN widths) are stored as their text."""
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def _better(a: float | None, b: float | None) -> bool:
    return a is not None and math.isfinite(a) and (b is None or a > b)


def trial_status(last_epoch: int, max_epochs: int, errored: bool = False) -> str:
    if errored:
        return "errored"
    # ASHA is the only thing that ends a healthy trial before max_epochs
    return "finished" if last_epoch >= max_epochs else "stopped"


def summary_rows(records: list[TrialRecord], max_epochs: int) -> list[dict[str, Any]]:
    out = []
    for rec in records:
        best: dict[str, Any] | None = None
        for row in rec.rows:
            if best is None or _better(row.get("val_acc"), best.get("val_acc")):
                best = row
        last = rec.rows[-1]["epoch"] if rec.rows else 0
        row = {"trial_id": rec.trial_id, "role": rec.role,
               "status": trial_status(last, max_epochs, rec.errored),
               "last_epoch": last, "best_epoch": best["epoch"] if best else None,
               "best_val_acc": best["val_acc"] if best else None}
        row.update({f"{k}_at_best": (best or {}).get(k) for k in AT_BEST if k != "val_acc"})
        row["error"] = rec.error
        row["config_yaml"] = dump_yaml(rec.resolved)
        row.update({f"config/{k}": _scalar(v) for k, v in sorted(rec.config.items())})
        out.append(row)
    return out


def pick(summary: list[dict[str, Any]], trial_id: str | None = None) -> dict[str, Any]:
    if trial_id is not None:
        for row in summary:
            if row["trial_id"] == trial_id:
                if row["best_val_acc"] is None:
                    raise UserError(f"trial '{trial_id}' reported no epoch; pick another")
                return row
        ids = ", ".join(r["trial_id"] for r in summary if r["role"] == SEARCH_ROLE)
        raise UserError(f"no trial '{trial_id}' in this experiment; trials: {ids}")
    candidates = [r for r in summary if r["role"] == SEARCH_ROLE and r["best_val_acc"] is not None]
    if not candidates:
        raise UserError("no trial of this experiment reported a result; nothing to export")
    return max(candidates, key=lambda r: (r["best_val_acc"], -r["best_epoch"]))


# ----------------------------------------------------------------------------- provenance


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

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


def config_with_provenance(row: dict[str, Any], experiment: str, meta: dict[str, Any]) -> str:
    config = yaml.safe_load(row["config_yaml"])
    provenance = {
        "experiment": experiment, "trial_id": row["trial_id"], "epoch": row["best_epoch"],
        "val_acc": row["best_val_acc"], "test_acc_at_best": row.get("test_acc_at_best"),
        "seed": config["train"]["seed"], "dataset": meta.get("dataset"),
        "method": config["method"]["name"], "versions": meta.get("versions", versions()),
        "git_sha": meta.get("git_sha"),
        "note": "train with this file reproduces the trial: same config, seed and epochs; "
                "use --epochs for a longer run. This block is ignored by train.",
    }
    return dump_yaml({**config, "provenance": json_safe(provenance)})


# ----------------------------------------------------------------------------- experiment io


def write_experiment(exp: str, records: list[TrialRecord], max_epochs: int,
                     meta: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Write every result file; returns the summary rows and the best trial's row (or None)."""
    summary = summary_rows(records, max_epochs)
    write_table(join(exp, "trials.parquet"), trial_rows(records))
    write_table(join(exp, "summary.parquet"), summary)
    write_bytes(join(exp, "search.json"), json.dumps(json_safe(meta), indent=2).encode())
    try:
        best = pick(summary)
    except UserError:
        return summary, None
    write_bytes(join(exp, "best_config.yaml"),
                config_with_provenance(best, exp, meta).encode())
    return summary, best


def load_experiment(exp: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not exists(join(exp, "search.json")) or not exists(join(exp, "summary.parquet")):
        raise UserError(f"'{exp}' is not a finished dnet-tune experiment (no search.json / "
                        f"summary.parquet); pass <storage>/<name> of a search")
    meta = json.loads(read_bytes(join(exp, "search.json")))
    return meta, read_table(join(exp, "summary.parquet"))


def export(exp: str, out: str, trial_id: str | None = None) -> dict[str, Any]:
    meta, summary = load_experiment(exp)
    row = pick(summary, trial_id)
    text = config_with_provenance(row, exp, meta)
    atomic_write(out, lambda p: p.write_text(text))
    return row


def report(storage: str) -> list[dict[str, Any]]:
    """Best search trial per dataset across every experiment under `storage`."""
    best: dict[str, dict[str, Any]] = {}
    for exp in list_dirs(storage):
        if not exists(join(exp, "search.json")):
            continue
        meta, summary = load_experiment(exp)
        try:
            row = pick(summary)
        except UserError:
            continue
        baseline = next((r for r in summary if r["role"] == BASELINE_ROLE), None)
        entry = {"dataset": meta["dataset"], "experiment": exp, "method": meta["method"],
                 "trial_id": row["trial_id"], "epoch": row["best_epoch"],
                 "val_acc": row["best_val_acc"],
                 **{k: row.get(f"{k}_at_best") for k in AT_BEST if k != "val_acc"},
                 "config": sampled_config_keys(
                     {k[len("config/"):]: v for k, v in row.items()
                      if k.startswith("config/") and v is not None},
                     frozenset(meta.get("virtual_params", []))),
                 "baseline_val_acc": baseline["best_val_acc"] if baseline else None,
                 "baseline_test_acc": baseline["test_acc_at_best"] if baseline else None}
        current = best.get(meta["dataset"])
        if current is None or entry["val_acc"] > current["val_acc"]:
            best[meta["dataset"]] = entry
    return [best[k] for k in sorted(best)]
