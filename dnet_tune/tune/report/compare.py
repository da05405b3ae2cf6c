"""Choosing and comparing methods honestly: candidates, confirmed choices, intervals.

Pure functions over result rows (no Ray, no files), so the live search, `report` and `export`
compute the same numbers from the same rows. Everything is chosen on the validation split V; test
numbers are carried along and reported, never used to choose.

Rules, in one place:
- A method's candidates are its top K trials by best val accuracy; ties go to the trial that
  reached its best at an earlier epoch (cheaper), then to the one that started first. Diverged
  trials are never candidates.
- With confirmation, each candidate is retrained with S fresh seeds; the chosen config is the one
  with the best mean val over its seeds (ties: candidate rank). The winner across methods is the
  method whose chosen config has the best mean val.
- Test accuracy is given as mean ± the half-width of a 95% t-interval over seeds.
- Difficulty-Net is compared with the best baseline (by mean val) on test, paired over the same
  seeds: the mean of per-seed differences with its own 95% t-interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from dnet_tune.method import DIFFICULTY_NET as DN
from dnet_tune.shot_groups import SHOT_GROUPS


def rank_key(row: dict[str, Any]) -> tuple[float, int, int]:
    """Sort key of a summary row: best val first, then earlier best epoch, then start order."""
    return (-row["best_val_acc"], row["best_epoch"], row.get("trial_index", 0))


def candidates(summary: list[dict[str, Any]], method: str, k: int) -> list[dict[str, Any]]:
    """The method's top k trials; a diverged trial never is one, whatever its early epochs
    scored (its config is unstable: retraining it with other seeds would diverge again)."""
    rows = [r for r in summary if r.get("method") == method and r["best_val_acc"] is not None
            and r.get("status") != "diverged"]
    return sorted(rows, key=rank_key)[:k]


def t_quantile(confidence: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the t-interval; the half-width is NaN below two values."""
    mean = statistics.fmean(values) if values else math.nan
    if len(values) < 2:
        return mean, math.nan
    sem = statistics.stdev(values) / math.sqrt(len(values))
    return mean, t_quantile(confidence, len(values) - 1) * sem


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def choose(confirm: list[dict[str, Any]], method: str,
           ranked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The confirmation rows of the method's chosen candidate (best mean val over seeds)."""
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for row in confirm:
        if row["method"] == method:
            by_trial.setdefault(row["trial_id"], []).append(row)
    order = {r["trial_id"]: i for i, r in enumerate(ranked)}
    if not by_trial:
        return []
    best = min(by_trial, key=lambda t: (-_mean([r["val_acc"] for r in by_trial[t]]),
                                         order.get(t, len(order))))
    return sorted(by_trial[best], key=lambda r: r["seed"])


def method_row(method: str, summary: list[dict[str, Any]], confirm: list[dict[str, Any]],
               k: int, budget: dict[str, Any]) -> dict[str, Any] | None:
    """One row of the final table: the chosen config's confirmed numbers and the compute spent."""
    ranked = candidates(summary, method, k)
    if not ranked:
        return None
    runs = choose(confirm, method, ranked)
    if runs:
        trial_id = runs[0]["trial_id"]
        val = [r["val_acc"] for r in runs]
        test = [r["test_acc"] for r in runs]
        groups = {g: _mean([r[f"test_{g}"] for r in runs]) for g in SHOT_GROUPS}
        seeds = [int(r["seed"]) for r in runs]
        confirmed = True
    else:  # no confirmation: the search trial itself, one seed
        top = ranked[0]
        trial_id = top["trial_id"]
        val, test = [top["best_val_acc"]], [top["test_acc_at_best"]]
        groups = {g: top[f"test_{g}_at_best"] for g in SHOT_GROUPS}
        seeds = []
        confirmed = False
    test_mean, test_ci = t_interval(test)
    return {
        "method": method, "trial_id": trial_id, "confirmed": confirmed, "seeds": seeds,
        "val_mean": _mean(val), "test_mean": test_mean, "test_ci95": test_ci,
        "test_std": statistics.stdev(test) if len(test) > 1 else math.nan,
        **{f"test_{g}": v for g, v in groups.items()},
        "test_by_seed": dict(zip(seeds, test, strict=True)) if confirmed else {},
        "trials": sum(1 for r in summary if r.get("method") == method),
        **budget,
    }


def winner(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The method whose chosen config has the best mean val (never test)."""
    ok = [r for r in rows if math.isfinite(r["val_mean"])]
    return max(ok, key=lambda r: r["val_mean"]) if ok else None


def dn_versus_best_baseline(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """DN minus the best baseline (by val) on test, paired over the seeds both were run with."""
    dn = next((r for r in rows if r["method"] == DN), None)
    baselines = [r for r in rows if r["method"] != DN]
    base = winner(baselines)
    if dn is None or base is None:
        return None
    seeds = sorted(set(dn["test_by_seed"]) & set(base["test_by_seed"]))
    diffs = [dn["test_by_seed"][s] - base["test_by_seed"][s] for s in seeds]
    if not diffs:  # unconfirmed: one value each, no interval
        diffs = [dn["test_mean"] - base["test_mean"]]
    mean, ci = t_interval(diffs)
    significant = math.isfinite(ci) and abs(mean) > ci
    return {"method": DN, "baseline": base["method"], "seeds": seeds, "diff_mean": mean,
            "diff_ci95": ci, "significant": significant}
