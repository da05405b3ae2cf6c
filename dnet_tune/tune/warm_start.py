"""`search --warm-start K`: each method's TPE first evaluates the best configs that earlier
searches of the same dataset confirmed.

Sources are the experiments under the same `--storage` (their confirm.parquet and the sampled
values in summary.parquet), not an Optuna database: that works for journal, database and bucket
storage alike, for experiments written before the studies were stored, and only confirmed
configs count (a search trial's best val is biased upwards; the confirmation's mean over fresh
seeds is not). A config is ranked by that mean, best first.

Spaces change between searches, so each config is projected onto the current space: a key the
space no longer has is dropped, a value outside its current range or choices is skipped (TPE
samples that parameter as usual), and one line says what was dropped and skipped.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from dnet_tune.errors import UserError
from dnet_tune.tune import ray_internals
from dnet_tune.tune.results import load_experiment
from dnet_tune.tune.sampling import METHOD_KEY
from dnet_tune.tune.space import SearchSpace
from dnet_tune.tune.storage import exists, join, list_dirs


@dataclass
class WarmStart:
    points: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per method
    sources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # provenance
    experiments: set[str] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)

    def line(self, dataset: str, root: str) -> str:
        if not any(self.points.values()):
            return (f"warm start: no confirmed configs of earlier {dataset} searches under "
                    f"{root}; starting from scratch")
        counts = ", ".join(f"{m} {len(p)}" for m, p in self.points.items() if p)
        names = ", ".join(sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in self.experiments))
        out = f"warm start: enqueued {counts} confirmed config(s) from {names}"
        if self.dropped:
            out += f"; dropped (not in this space): {', '.join(sorted(self.dropped))}"
        if self.skipped:
            out += (f"; skipped (outside this space, sampled instead): "
                    f"{', '.join(sorted(self.skipped))}")
        return out

    def record(self) -> dict[str, Any]:
        """What search.json keeps: where each enqueued config came from."""
        return {"sources": self.sources, "dropped": sorted(self.dropped),
                "skipped": sorted(self.skipped)}


def _confirmed(summary: list[dict[str, Any]], confirm: list[dict[str, Any]],
               method: str) -> list[tuple[float, dict[str, Any]]]:
    """(mean confirmed val, summary row) of each confirmed config of `method`."""
    vals: dict[str, list[float]] = {}
    for r in confirm:
        if r.get("method") == method and r.get("val_acc") is not None:
            vals.setdefault(r["trial_id"], []).append(float(r["val_acc"]))
    rows = {r["trial_id"]: r for r in summary}
    return [(statistics.fmean(v), rows[t]) for t, v in vals.items() if t in rows]


def find(root: str, dataset: str, methods: list[str], space: SearchSpace, k: int,
         exclude: str | None = None) -> WarmStart:
    """The best `k` confirmed configs per method among `root`'s earlier `dataset` searches."""
    ranked: dict[str, list[tuple[float, str, dict[str, Any]]]] = {m: [] for m in methods}
    for exp in list_dirs(root):
        if exp == exclude or not exists(join(exp, "search.json")):
            continue
        try:
            meta, summary, confirm = load_experiment(exp)
        except UserError:  # not (yet) readable: not a source
            continue
        if meta.get("dataset") != dataset:
            continue
        for m in methods:
            ranked[m] += [(val, exp, row) for val, row in _confirmed(summary, confirm, m)]
    out = WarmStart()
    for m in methods:
        dists = space.distributions(m)
        not_sampled = {METHOD_KEY} | {p.into for p in space.params_for(m) if p.into}
        out.points[m], out.sources[m] = [], []
        for val, exp, row in sorted(ranked[m], key=lambda t: -t[0]):
            if len(out.points[m]) >= k:
                break
            point = {}
            for col, value in row.items():
                key = col.removeprefix("config/")
                if key == col or value is None or key in not_sampled:
                    continue
                if key not in dists:
                    out.dropped.add(key)
                elif ray_internals.distribution_contains(dists[key], value):
                    point[key] = value
                else:
                    out.skipped.add(f"{key}={value}")
            if point and point not in out.points[m]:
                out.points[m].append(point)
                out.sources[m].append({"experiment": exp, "trial_id": row["trial_id"],
                                       "confirmed_val_mean": val})
                out.experiments.add(exp)
    return out
