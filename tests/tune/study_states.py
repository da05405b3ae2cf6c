"""What a search's Optuna studies must say about its trials (README, "How a trial ends in its
study"), checked against the search's own tables: one check that the tests of real searches
share (a smoke search, a two-stage one, diverging trials, a killed and resumed one, a parallel
one)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import optuna
import pyarrow.parquet as pq
from optuna.trial import TrialState

from dnet_tune.fileio import table_to_rows
from dnet_tune.tune.faults import studies

# a trial's summary status -> the state of its study record
STATE_OF = {"finished": TrialState.COMPLETE, "stopped": TrialState.PRUNED,
            "diverged": TrialState.COMPLETE, "errored": TrialState.FAIL}


def load_studies(exp: Path) -> dict[str, optuna.Study]:
    meta = json.loads((exp / "search.json").read_text())
    storage = studies.open_storage(None, str(exp / studies.JOURNAL))
    return {m: optuna.load_study(study_name=studies.study_name(meta["experiment"], m),
                                 storage=storage) for m in meta["methods"]}


def assert_studies_mirror(exp: Path) -> Counter[str]:
    """Every ended trial has exactly one record in its method's study that is not FAIL (FAIL:
    errored, orphaned, or a stage-2 proposal told again without its stage-2 values), in the
    state its status says, with one intermediate value per epoch it ran (step = epoch, value =
    its best val so far, what ranks trials) and as its value the best val (diverged: 0.0).
    Returns how many records of each state it checked."""
    summary = {r["trial_id"]: r for r in pq.read_table(exp / "summary.parquet").to_pylist()}
    rows = table_to_rows(pq.read_table(exp / "trials.parquet"))
    seen: Counter[str] = Counter()
    for method, study in load_studies(exp).items():
        told: dict[str, optuna.trial.FrozenTrial] = {}
        for t in study.get_trials(deepcopy=False):
            assert t.state != TrialState.RUNNING, (method, t.number)
            if t.state == TrialState.FAIL:
                continue
            ray_id = t.user_attrs[studies.RAY_TRIAL_ATTR]
            assert ray_id not in told, (method, ray_id)
            told[ray_id] = t
        ended = {tid: r for tid, r in summary.items()
                 if r["method"] == method and r["status"] in ("finished", "stopped", "diverged")}
        assert set(told) == set(ended), (method, sorted(told), sorted(ended))
        for tid, r in ended.items():
            t = told[tid]
            assert t.state == STATE_OF[r["status"]], (tid, r["status"], t.state)
            curve = {x["epoch"]: x["best_val_acc"] for x in rows if x["trial_id"] == tid}
            assert t.intermediate_values == curve, (tid, t.intermediate_values, curve)
            assert t.value == (0.0 if r["status"] == "diverged" else r["best_val_acc"]), tid
            seen[t.state.name] += 1
    return seen
