"""What a report is drawn from: one experiment's files, read once, with what is missing named.

Every figure and the HTML table read the same `ReportData`, built on
`chosen_configs.comparison`, so the plots, `report` and `report --json` can never disagree about
which trial a method chose.
Missing pieces (an interrupted search without confirm.parquet or trials.parquet, an experiment
written before a column existed, a space file that moved) are not errors: they become a reason,
which the figures print where the plot would have been.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dnet_tune.config import config_from_dict
from dnet_tune.errors import UserError
from dnet_tune.schedule import migrate_milestones
from dnet_tune.shot_groups import SHOT_GROUPS
from dnet_tune.tune import plan
from dnet_tune.tune.report import chosen_configs
from dnet_tune.tune.report.compare import DN, winner
from dnet_tune.tune.results import load_experiment, sampled_values
from dnet_tune.tune.space import SearchSpace, default_space_path
from dnet_tune.tune.space_file import load_space
from dnet_tune.tune.storage import RESTORE, exists, join, read_table

SPARE_COLOURS = ("#e377c2", "#bcbd22", "#17becf", "#393b79", "#ad494a")


def method_colour(method: str) -> str:
    """The colour the method declares in the registry: one per method, the same in every figure
    and every report, so a reader learns them once."""
    from dnet_tune.method.methods import METHODS  # loads torch: only the figures need it

    colour = METHODS.entry(method).info.get("colour") if method in METHODS else None
    if colour is not None:
        return str(colour)
    # a method without one (or no longer registered) still gets a stable colour (not one that
    # depends on order)
    return SPARE_COLOURS[sum(map(ord, method)) % len(SPARE_COLOURS)]


def asha_rungs(budget: dict[str, Any]) -> list[float]:
    """The epochs at which ASHA may stop a trial: Ray's milestones below max_epochs."""
    try:
        grace = float(budget["grace_period"])
        rf = float(budget["reduction_factor"])
        top = float(budget["max_epochs"])
    except (KeyError, TypeError, ValueError):
        return []
    return plan.asha_rungs(grace, rf, top)


@dataclass
class ReportData:
    exp: str
    meta: dict[str, Any]
    summary: list[dict[str, Any]]
    confirm: list[dict[str, Any]]
    trials: list[dict[str, Any]]  # trials.parquet rows; empty when the file is missing
    rows: list[dict[str, Any]]  # chosen_configs.comparison: one per method that reported anything
    diff: dict[str, Any] | None
    methods: list[str]
    classes: dict[str, Any] | None  # data.registry.summary: per-class counts and groups
    space: SearchSpace | None
    notes: dict[str, str] = field(default_factory=dict)  # what is missing, and why

    @property
    def status(self) -> str:
        return str(self.meta.get("status", "finished"))

    @property
    def budget(self) -> dict[str, Any]:
        return dict(self.meta.get("budget") or {})

    @property
    def max_epochs(self) -> float | None:
        """Epochs of a whole trial (stage 2 included): ASHA's max_t."""
        top = self.meta.get("epochs_per_trial") or self.budget.get("max_epochs")
        return float(top) if top else None

    @property
    def rungs(self) -> list[float]:
        return asha_rungs({**self.budget, "max_epochs": self.max_epochs})

    @property
    def confirmed(self) -> bool:
        return any(r["confirmed"] for r in self.rows)

    def trials_of(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.summary if r.get("method") == method]

    def epochs_of(self, trial_id: str) -> list[dict[str, Any]]:
        rows = [r for r in self.trials if r.get("trial_id") == trial_id]
        return sorted(rows, key=lambda r: r["epoch"])

    def status_counts(self, method: str) -> str:
        counts: dict[str, int] = {}
        for t in self.trials_of(method):
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"

    def no_result(self, method: str) -> str:
        return f"{method} has no usable result ({self.status_counts(method)})"

    def row_for(self, method: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["method"] == method), None)

    def winner(self) -> str | None:
        best = winner(self.rows)
        return best["method"] if best else None

    def best_baseline(self) -> str | None:
        if self.diff is not None:
            return str(self.diff["baseline"])
        best = winner([r for r in self.rows if r["method"] != DN])
        return best["method"] if best else None

    def class_order(self) -> list[int] | None:
        """Class indices from the most to the fewest training images."""
        if self.classes is None:
            return None
        train = self.classes["train"]
        return sorted(range(len(train)), key=lambda c: (-train[c], c))

    def group_of(self) -> dict[int, str]:
        if self.classes is None:
            return {}
        return {c: g for g in SHOT_GROUPS for c in self.classes.get(g, [])}

    def per_class_test(self, method: str) -> tuple[list[float] | None, str]:
        """The method's chosen config's per-class test accuracy and where it came from: the
        mean over its confirmation seeds, else its search trial at the epoch it selected."""
        row = self.row_for(method)
        if row is None:
            return None, self.no_result(method)
        runs = [r for r in self.confirm if r["method"] == method
                and r["trial_id"] == row["trial_id"] and r.get("test_class_acc")]
        if runs:
            per_seed = [r["test_class_acc"] for r in runs]
            seeds = ", ".join(str(r["seed"]) for r in runs)
            return ([statistics.fmean(v) for v in zip(*per_seed, strict=True)],
                    f"mean over confirmation seeds {seeds}")
        trial = next((r for r in self.summary if r["trial_id"] == row["trial_id"]), None)
        at = [r for r in self.epochs_of(row["trial_id"])
              if trial is not None and r["epoch"] == trial["best_epoch"]
              and r.get("test_class_acc")]
        if at:
            return list(at[0]["test_class_acc"]), (f"search trial {row['trial_id']}, one seed, "
                                                   f"epoch {at[0]['epoch']}")
        return None, ("per-class test accuracy was not recorded (results written before "
                      "dnet-tune stored test_class_acc)")


def _classes(meta: dict[str, Any], summary: list[dict[str, Any]]) -> tuple[dict[str, Any] | None,
                                                                          str]:
    """search.json's copy of the class counts; for older experiments, the dataset itself."""
    if isinstance(meta.get("data"), dict) and meta["data"].get("train"):
        return meta["data"], ""
    config_yaml = next((r.get("config_yaml") for r in summary if r.get("config_yaml")), None)
    if config_yaml is None:
        return None, "no trial config to find the dataset's class counts from"

    from dnet_tune.data.registry import describe

    try:  # only its data section is used: older absolute milestones need no note here
        raw, _ = migrate_milestones(yaml.safe_load(config_yaml), "a trial's config")
        return describe(config_from_dict(raw).data), ""
    except (UserError, OSError) as exc:
        return None, (f"class counts are not in search.json (an older experiment) and the "
                      f"dataset could not be built here: {exc}")


def _space(meta: dict[str, Any]) -> tuple[SearchSpace | None, str]:
    """The space the search used; if that file is gone, the packaged one for the dataset."""
    tried = [p for p in (meta.get("space"),) if p]
    if meta.get("dataset"):
        tried.append(str(default_space_path(str(meta["dataset"]))))
    for path in tried:
        if Path(path).is_file():
            try:
                return load_space(path), ""
            except UserError:
                continue
    return None, f"no readable search space file (tried {', '.join(tried) or 'none'})"


TRIALS_REMEDY = f"{RESTORE}, or move it away to draw the report without per-epoch results"


def load_report_data(exp: str) -> ReportData:
    meta, summary, confirm = load_experiment(exp)
    notes: dict[str, str] = {}
    trials_path = join(exp, "trials.parquet")
    trials = read_table(trials_path, TRIALS_REMEDY) if exists(trials_path) else []
    if not trials and any(r.get("last_epoch") for r in summary):
        notes["trials"] = "trials.parquet is missing: no per-epoch results"
    if not confirm:
        notes["confirm"] = ("not confirmed (no confirm.parquet: searched with --no-confirm, "
                            "interrupted, or nothing to confirm): each method's numbers are its "
                            "best search trial, one seed, no interval")
    rows, diff = chosen_configs.comparison(meta, summary, confirm)
    virtual = frozenset(meta.get("virtual_params", []))
    for row in rows:  # the chosen trial's sampled values, as `report` prints them
        trial = next(r for r in summary if r["trial_id"] == row["trial_id"])
        row["config"] = sampled_values(trial, virtual)
    methods = [m for m in (meta.get("methods") or [meta.get("method")]) if m]
    for r in summary:  # a method in the results but not in search.json still gets drawn
        if r.get("method") and r["method"] not in methods:
            methods.append(r["method"])
    classes, why = _classes(meta, summary)
    if why:
        notes["classes"] = why
    space, why = _space(meta)
    if why:
        notes["space"] = why
    return ReportData(exp, meta, summary, confirm, trials, rows, diff, methods, classes, space,
                      notes)
