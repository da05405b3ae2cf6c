"""Experiment results as files: what every trial and confirmation run reported, as Parquet.

Layout of `<storage>/<name>/` (beside Ray's own experiment files):
  trials.parquet     one row per trial per reported epoch: trial_id, method, config/*, metrics
  summary.parquet    one row per trial: method, status, last/best epoch, best val_acc, metrics
                     there, and the trial's complete resolved config (YAML text)
  confirm.parquet    one row per (method, trial_id, seed) of the confirmation: the metrics at
                     the epoch each run selected on V
  best/<method>.yaml each method's chosen config (`dnet-tune train --config`), with provenance
  best_config.yaml   the winner's, chosen by confirmed mean val
  search.json        what was asked and what each method spent: budget, resources, seeds

Storage may be a local path or a URI (see `storage`). If building the tables fails, what Ray
recorded is kept as JSON (`raw_results.json`) and the error names it: a finished search is never
lost. If the storage itself refuses the write (full, read-only), the tables written before stay
as they were and the error says so (`StorageWriteError`): the search resumes once it takes
writes again. A file here that no longer parses is one line naming it (`DamagedFile`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from dnet_tune.errors import DamagedFile, UserError
from dnet_tune.fileio import json_safe
from dnet_tune.shot_groups import SHOT_GROUPS
from dnet_tune.tune.sampling import METHOD_KEY, sampled_config_keys
from dnet_tune.tune.storage import (
    RESTORE,
    StorageWriteError,
    exists,
    join,
    read_json,
    read_table,
    write_bytes,
    write_table,
)
from dnet_tune.yamlio import dump_yaml

# The metrics of the epoch a run selected on V, as the trainer names them: each trial's in
# summary.parquet (`<metric>_at_best`), each confirmation run's in confirm.parquet (`confirm`).
AT_BEST = tuple(f"{split}_{k}" for split in ("val", "test") for k in ("acc", *SHOT_GROUPS))


class ResultsWriteError(Exception):
    """Writing the result files failed; the message says where the raw results were kept."""


@dataclass
class TrialRecord:
    trial_id: str
    method: str
    config: dict[str, Any]  # the flat sampled config
    resolved: dict[str, Any]  # the complete core config
    index: int = 0  # start order within the search: the last tie-breaker of a ranking
    rows: list[dict[str, Any]] = field(default_factory=list)
    errored: bool = False
    diverged: bool = False  # its training loss became non-finite: ended cleanly, not errored
    error: str = ""
    done: bool = False  # Tune ended it (finished, stopped, diverged or errored)


def trial_rows(records: list[TrialRecord]) -> list[dict[str, Any]]:
    out = []
    for rec in records:
        flat = {f"config/{k}": _scalar(v) for k, v in sorted(rec.config.items())}
        for row in rec.rows:
            out.append({"trial_id": rec.trial_id, "method": rec.method, **flat, **row})
    return out


def _scalar(v: Any) -> Any:
    """Lists (DN widths) as their JSON text: one column, readable in any Parquet viewer."""
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def _better(a: float | None, b: float | None) -> bool:
    return a is not None and math.isfinite(a) and (b is None or a > b)


def trial_status(last_epoch: int, max_epochs: int, errored: bool = False,
                 diverged: bool = False) -> str:
    if errored:
        return "errored"
    if diverged:  # a property of the config (e.g. a learning rate too high), not a failure
        return "diverged"
    # ASHA is the only thing that ends a healthy trial before max_epochs
    return "finished" if last_epoch >= max_epochs else "stopped"


def record_status(rec: TrialRecord, max_epochs: int) -> str:
    """A trial Tune has not ended yet (running, pending, or paused by a Ctrl-C) is unfinished."""
    if not rec.done:
        return "unfinished"
    last = rec.rows[-1]["epoch"] if rec.rows else 0
    return trial_status(last, max_epochs, rec.errored, rec.diverged)


def summary_rows(records: list[TrialRecord], max_epochs: int,
                 yaml_cache: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """`yaml_cache` (trial id -> config YAML) spares the tables written while the search runs
    from dumping every trial's unchanging config again at each write."""
    out = []
    cache = {} if yaml_cache is None else yaml_cache
    for rec in records:
        best: dict[str, Any] | None = None
        for row in rec.rows:
            if best is None or _better(row.get("val_acc"), best.get("val_acc")):
                best = row
        last = rec.rows[-1]["epoch"] if rec.rows else 0
        row = {"trial_id": rec.trial_id, "method": rec.method, "trial_index": rec.index,
               "status": record_status(rec, max_epochs),
               "last_epoch": last, "best_epoch": best["epoch"] if best else None,
               "best_val_acc": best["val_acc"] if best else None}
        row.update({f"{k}_at_best": (best or {}).get(k) for k in AT_BEST if k != "val_acc"})
        row["trial_seconds"] = sum(float(r.get("epoch_time_s", 0.0)) for r in rec.rows)
        row["error"] = rec.error
        if rec.trial_id not in cache:
            cache[rec.trial_id] = dump_yaml(rec.resolved)
        row["config_yaml"] = cache[rec.trial_id]
        row.update({f"config/{k}": _scalar(v) for k, v in sorted(rec.config.items())})
        out.append(row)
    return out


def sampled_values(trial: dict[str, Any], virtual: set[str] | frozenset[str]
                   ) -> dict[str, Any]:
    """What the searcher chose for a trial, from its summary row: its `config/` columns as config
    keys, without the method (the row's own `method`), the names that only steer sampling
    (`virtual`) and the values a trial of another method left empty in the shared table."""
    flat = {k.removeprefix("config/"): v for k, v in trial.items()
            if k.startswith("config/") and v is not None}
    flat.pop(METHOD_KEY, None)
    return sampled_config_keys(flat, virtual)


def compute_by_method(summary: list[dict[str, Any]], confirm: list[dict[str, Any]],
                      gpus_per_trial: float) -> dict[str, dict[str, Any]]:
    """What each method spent, so a reader can check that the budgets match."""
    out: dict[str, dict[str, Any]] = {}
    for r in summary:
        m = out.setdefault(r["method"], {"trials": 0, "trial_epochs": 0, "trial_seconds": 0.0,
                                         "confirm_runs": 0, "confirm_seconds": 0.0})
        m["trials"] += 1
        m["trial_epochs"] += int(r["last_epoch"] or 0)
        m["trial_seconds"] += float(r["trial_seconds"])
    for r in confirm:
        m = out[r["method"]]
        m["confirm_runs"] += 1
        m["confirm_seconds"] += float(r.get("run_seconds") or 0.0)
    for m in out.values():
        m["gpu_seconds"] = m["trial_seconds"] * gpus_per_trial
        m["confirm_gpu_seconds"] = m["confirm_seconds"] * gpus_per_trial
    return out


def write_json(location: str, data: Any) -> None:
    write_bytes(location, json.dumps(json_safe(data), indent=2).encode())


def write_tables(exp: str, records: list[TrialRecord], summary: list[dict[str, Any]],
                 confirm: list[dict[str, Any]]) -> None:
    """The Parquet files; on any failure the records go to raw_results.json and the error
    names that file."""
    try:
        write_table(join(exp, "trials.parquet"), trial_rows(records))
        write_table(join(exp, "summary.parquet"), summary)
        if confirm:
            write_table(join(exp, "confirm.parquet"), confirm)
    except StorageWriteError:  # the same storage would refuse raw_results.json too
        raise
    except Exception as exc:
        raw = join(exp, "raw_results.json")
        write_bytes(raw, json.dumps(json_safe({
            "trials": [vars(r) for r in records], "confirm": confirm}), default=str).encode())
        raise ResultsWriteError(f"could not write the result tables ({type(exc).__name__}: "
                                f"{exc}); every reported epoch is in {raw}") from exc


SEARCH_JSON = "search.json"
SUMMARY_REMEDY = (f"{RESTORE}, or, if the search did not finish, continue it with --resume, "
                  f"which writes it again")
CONFIRM_REMEDY = f"{RESTORE}, or move it away to see the search's own, unconfirmed numbers"


def read_search_json(exp: str, hint: str = "pass <storage>/<name> of a search") -> dict[str, Any]:
    """search.json of `exp`: what was asked, the status, the driver; missing or damaged is one
    line (every command that opens an experiment starts here)."""
    path = join(exp, SEARCH_JSON)
    if not exists(path):
        raise UserError(f"'{exp}' is not a dnet-tune experiment (no {SEARCH_JSON}); {hint}")
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise DamagedFile(path, f"a JSON {type(meta).__name__}, not the search's record",
                          RESTORE)
    return meta


def read_confirm(exp: str) -> list[dict[str, Any]]:
    """The confirmation rows written so far (none without confirm.parquet)."""
    path = join(exp, "confirm.parquet")
    return read_table(path, CONFIRM_REMEDY) if exists(path) else []


def load_experiment(exp: str) -> tuple[dict[str, Any], list[dict[str, Any]],
                                       list[dict[str, Any]]]:
    """search.json, summary rows and confirmation rows (empty without confirmation).

    A running or interrupted search may have no summary yet (no trial reported): no rows.
    """
    meta = read_search_json(exp)
    if not exists(join(exp, "summary.parquet")):
        if meta.get("status", "finished") == "finished":
            raise UserError(f"'{exp}' has no summary.parquet; its results were not written")
        return meta, [], []
    # experiments written before searches had several methods: one method and an untuned
    # `ce` row (role "baseline"), which is no tuned method and is left out
    summary = [{"method": meta.get("method"), **r}
               for r in read_table(join(exp, "summary.parquet"), SUMMARY_REMEDY)
               if r.get("role", "search") == "search"]
    return meta, summary, read_confirm(exp)


def mark_interrupted(exp: str) -> bool:
    """search.json says `interrupted` (a search that stopped part-way and can be resumed);
    False if it could not be read or written (the storage is still refusing writes)."""
    try:
        meta = read_search_json(exp)
        write_json(join(exp, SEARCH_JSON), {**meta, "status": "interrupted"})
    except (UserError, StorageWriteError):
        return False
    return True
