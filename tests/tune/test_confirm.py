"""The confirmation's jobs (`tune/confirm.py`) without Ray: which search trials are retrained,
with which seeds, in which order, with which config. The runs themselves are Ray tasks, covered
by the smoke searches (test_search.py, test_report.py)."""

from __future__ import annotations

import copy

from dnet_tune.tune.confirm import Job, jobs_for, key
from dnet_tune.tune.results import TrialRecord


def _trial(trial_id, method, val, epoch=3, index=0, status="finished"):
    return {"trial_id": trial_id, "method": method, "best_val_acc": val, "best_epoch": epoch,
            "trial_index": index, "status": status}


def _record(trial_id, method, lr):
    return TrialRecord(trial_id, method, {"optim.lr": lr},
                       {"method": {"name": method}, "optim": {"lr": lr},
                        "train": {"seed": 0, "epochs": 4}})


SUMMARY = [
    _trial("ce_a", "ce", 0.70, index=0),
    _trial("ce_b", "ce", 0.80, index=1),
    _trial("ce_c", "ce", 0.75, index=2),
    _trial("ce_d", "ce", 0.95, index=3, status="diverged"),  # never a candidate
    _trial("ce_e", "ce", None, index=4, status="errored"),  # reported nothing
    _trial("dn_a", "difficulty_net", 0.60, index=5),
]
RECORDS = {r["trial_id"]: _record(r["trial_id"], r["method"], 0.01 * (i + 1))
           for i, r in enumerate(SUMMARY)}


def test_jobs_interleave_seeds_then_ranks_then_methods():
    jobs = jobs_for(SUMMARY, RECORDS, ["difficulty_net", "ce"], top=2, seeds=[11, 12])
    assert [(j.seed, j.rank, j.method, j.trial_id) for j in jobs] == [
        (11, 1, "difficulty_net", "dn_a"), (11, 1, "ce", "ce_b"),
        (11, 2, "ce", "ce_c"),  # difficulty_net has one candidate only: no rank 2
        (12, 1, "difficulty_net", "dn_a"), (12, 1, "ce", "ce_b"),
        (12, 2, "ce", "ce_c"),
    ]


def test_a_job_s_config_is_its_trial_s_resolved_config_with_the_fresh_seed():
    before = copy.deepcopy(RECORDS["ce_b"].resolved)
    (job,) = jobs_for(SUMMARY, RECORDS, ["ce"], top=1, seeds=[7])
    assert job == Job("ce", "ce_b", 1, 7, {"method": {"name": "ce"}, "optim": {"lr": 0.02},
                                            "train": {"seed": 7, "epochs": 4}})
    assert RECORDS["ce_b"].resolved == before  # the search trial's own record is untouched


def test_top_k_beyond_the_candidates_and_methods_without_any():
    jobs = jobs_for(SUMMARY, RECORDS, ["ce", "focal"], top=5, seeds=[3])
    # ce_d diverged and ce_e reported nothing; focal has no trial at all
    assert [(j.rank, j.trial_id) for j in jobs] == [(1, "ce_b"), (2, "ce_c"), (3, "ce_a")]
    assert jobs_for(SUMMARY, RECORDS, ["ce"], top=2, seeds=[]) == []


def test_a_run_s_identity_is_the_same_for_its_job_and_its_row():
    (job,) = jobs_for(SUMMARY, RECORDS, ["difficulty_net"], top=1, seeds=[5])
    row = {"method": "difficulty_net", "trial_id": "dn_a", "seed": 5.0, "val_acc": 0.6}
    assert key(job) == key(row) == ("difficulty_net", "dn_a", 5)
    assert key({**row, "seed": 6}) != key(job)
