"""The arithmetic of honest comparisons, on hand-computed examples."""

from __future__ import annotations

import math

import pytest

from dnet_tune.tune.report import compare

# t(0.975, dof) from tables: dof 1 -> 12.7062, dof 2 -> 4.3027
T975 = {1: 12.7062047, 2: 4.30265273}


def test_t_interval_by_hand():
    mean, half = compare.t_interval([0.80, 0.84, 0.82])
    # mean .82; sample sd .02; sem .02/sqrt(3) = .0115470; times t(.975, 2)
    assert mean == pytest.approx(0.82)
    assert half == pytest.approx(T975[2] * 0.02 / math.sqrt(3), rel=1e-6)
    assert half == pytest.approx(0.0496827, rel=1e-5)
    mean, half = compare.t_interval([0.5, 0.7])
    assert mean == pytest.approx(0.6) and half == pytest.approx(T975[1] * 0.1, rel=1e-6)
    mean, half = compare.t_interval([0.9])
    assert mean == 0.9 and math.isnan(half)


def _summary_row(trial_id, method, val, epoch, index, test=0.5):
    return {"trial_id": trial_id, "method": method, "best_val_acc": val, "best_epoch": epoch,
            "trial_index": index, "test_acc_at_best": test, "test_many_at_best": test,
            "test_medium_at_best": test, "test_few_at_best": test}


def test_candidates_break_ties_by_earlier_epoch_then_start_order():
    summary = [_summary_row("a", "ce", 0.9, 5, 0), _summary_row("b", "ce", 0.9, 3, 1),
               _summary_row("c", "ce", 0.9, 3, 2), _summary_row("d", "ce", 0.95, 9, 3),
               _summary_row("e", "focal", 0.99, 1, 4),
               {**_summary_row("f", "ce", 0.0, 1, 5), "best_val_acc": None}]
    assert [r["trial_id"] for r in compare.candidates(summary, "ce", 10)] == ["d", "b", "c", "a"]
    assert [r["trial_id"] for r in compare.candidates(summary, "ce", 2)] == ["d", "b"]


def test_a_diverged_trial_is_never_a_candidate_whatever_it_scored_first():
    summary = [{**_summary_row("a", "ce", 0.99, 2, 0), "status": "diverged"},
               {**_summary_row("b", "ce", 0.50, 3, 1), "status": "stopped"},
               {**_summary_row("c", "ce", 0.40, 3, 2), "status": "finished"}]
    assert [r["trial_id"] for r in compare.candidates(summary, "ce", 3)] == ["b", "c"]
    row = compare.method_row("ce", summary, [], 1, {})
    assert row is not None and row["trial_id"] == "b"
    assert compare.method_row("ce", summary[:1], [], 1, {}) is None  # nothing usable


def _confirm(method, trial, seed, val, test):
    return {"method": method, "trial_id": trial, "seed": seed, "val_acc": val, "test_acc": test,
            "test_many": test, "test_medium": test, "test_few": test}


def test_choice_by_mean_val_and_paired_difference_by_hand():
    summary = [_summary_row("d1", "difficulty_net", 0.95, 3, 0),
               _summary_row("d2", "difficulty_net", 0.90, 3, 1),
               _summary_row("c1", "ce", 0.93, 3, 2), _summary_row("b1", "balanced_softmax",
                                                                  0.80, 3, 3)]
    confirm = [
        # d2 was second in the search but wins on mean val over seeds (.89 > .87)
        _confirm("difficulty_net", "d1", 1, 0.86, 0.70), _confirm("difficulty_net", "d1", 2, 0.88,
                                                                   0.71),
        _confirm("difficulty_net", "d1", 3, 0.87, 0.72),
        _confirm("difficulty_net", "d2", 1, 0.90, 0.90), _confirm("difficulty_net", "d2", 2, 0.88,
                                                                   0.80),
        _confirm("difficulty_net", "d2", 3, 0.89, 0.85),
        _confirm("ce", "c1", 1, 0.85, 0.88), _confirm("ce", "c1", 2, 0.86, 0.81),
        _confirm("ce", "c1", 3, 0.84, 0.80),
        _confirm("balanced_softmax", "b1", 1, 0.99, 0.10), _confirm("balanced_softmax", "b1", 2,
                                                                     0.20, 0.10),
        _confirm("balanced_softmax", "b1", 3, 0.20, 0.10),
    ]
    rows = [compare.method_row(m, summary, confirm, 2, {})
            for m in ("difficulty_net", "ce", "balanced_softmax")]
    dn, ce, bs = rows
    assert dn["trial_id"] == "d2" and dn["seeds"] == [1, 2, 3]
    assert dn["val_mean"] == pytest.approx(0.89) and dn["test_mean"] == pytest.approx(0.85)
    # test .90 .80 .85: sd .05, half-width t(.975,2) * .05/sqrt(3)
    assert dn["test_ci95"] == pytest.approx(T975[2] * 0.05 / math.sqrt(3), rel=1e-6)
    assert compare.winner(rows)["method"] == "difficulty_net"
    diff = compare.dn_versus_best_baseline(rows)
    # best baseline by val: ce (.85) over balanced_softmax (.463), never by test
    assert diff["baseline"] == "ce" and bs["val_mean"] < ce["val_mean"]
    # per seed: .90-.88, .80-.81, .85-.80 = .02, -.01, .05: mean .02, sd .03
    assert diff["diff_mean"] == pytest.approx(0.02)
    assert diff["diff_ci95"] == pytest.approx(T975[2] * 0.03 / math.sqrt(3), rel=1e-6)
    assert diff["significant"] is False  # .0745 > .02: the interval contains 0


def test_without_confirmation_the_search_trial_stands_alone():
    summary = [_summary_row("d1", "difficulty_net", 0.95, 3, 0, test=0.7),
               _summary_row("c1", "ce", 0.93, 3, 1, test=0.8)]
    rows = [compare.method_row(m, summary, [], 3, {}) for m in ("difficulty_net", "ce")]
    assert rows[0]["confirmed"] is False and rows[0]["test_mean"] == 0.7
    assert math.isnan(rows[0]["test_ci95"])
    diff = compare.dn_versus_best_baseline(rows)
    assert diff["diff_mean"] == pytest.approx(-0.1) and math.isnan(diff["diff_ci95"])
    assert diff["significant"] is False
