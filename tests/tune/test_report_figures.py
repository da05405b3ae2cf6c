"""The report's figures (`tune/report/figures.py`, `figures_classes.py`) on an experiment written
by hand (`experiments.py`, no Ray): which trial each figure shows, what its caption says, and
that a panel with nothing to draw says why instead of drawing an empty chart. What the pixels
look like is checked by eye (test_report.py draws every figure of a real search)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from experiments import write_experiment

from dnet_tune.tune.report import figures, figures_classes, figures_optuna
from dnet_tune.tune.report.data import load_report_data

PNG = b"\x89PNG\r\n\x1a\n"


def _png_header(width: int, height: int) -> bytes:
    return PNG + b"\x00\x00\x00\x0dIHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_report_data(write_experiment(tmp_path_factory.mktemp("figures") / "exp1"))


def _draw(make, *args):
    with figures.style():
        return make(*args)


def test_figures_are_shown_at_100_px_per_inch_of_their_png():
    assert figures.shown_width(_png_header(1800, 900)) == 1200  # drawn at 150 dpi
    assert figures.shown_width(_png_header(151, 10)) == 101


def test_a_figure_with_nothing_to_draw_is_a_strip_with_the_reasons():
    fig = _draw(figures.note_only, "9-key", "Section", "Title", "caption",
                ["first reason", "", "second reason", "first reason"], 6.0)
    assert (fig.key, fig.section, fig.title, fig.caption, fig.empty) == (
        "9-key", "Section", "Title", "caption", True)
    assert fig.notes == ["first reason", "", "second reason", "first reason"]
    assert fig.png.startswith(PNG) and fig.width_px == figures.shown_width(fig.png)


def test_learning_curves_name_the_budget_and_shade_stage_2(data):
    staged = dataclasses.replace(data, meta={**data.meta, "epochs_per_trial": 3})
    fig = _draw(figures.learning_curves, staged)
    assert not fig.empty and fig.notes == []
    assert fig.caption.endswith("Budget: 2 epochs, grace period 1, reduction factor 2; epochs "
                                "3–3 are stage 2 (shaded).")


def test_learning_curves_without_per_epoch_results_say_so_per_method(tmp_path):
    d = load_report_data(write_experiment(tmp_path / "exp", trials=False))
    fig = _draw(figures.learning_curves, d)
    assert fig.empty
    assert fig.notes == ["difficulty_net: trials.parquet is missing: no per-epoch results",
                         "ce: trials.parquet is missing: no per-epoch results"]


def test_method_comparison_says_how_its_numbers_were_made(data, tmp_path):
    fig = _draw(figures.method_comparison, data)
    assert not fig.empty
    assert fig.caption.startswith("Test accuracy of each method's chosen config (mean over "
                                  "confirmation seeds 5, 6, error bars the 95% t-interval")
    single = load_report_data(write_experiment(tmp_path / "exp", confirm=False))
    assert "(not confirmed: each method's best search trial, one seed, no interval)" in _draw(
        figures.method_comparison, single).caption
    nothing = _draw(figures.method_comparison, dataclasses.replace(data, rows=[]))
    assert nothing.empty and nothing.notes == [
        "no result from any method: no trial reported a usable epoch"]


def test_per_class_accuracy_of_the_chosen_configs_and_where_it_came_from(data, tmp_path):
    fig = _draw(figures_classes.per_class, data)
    assert not fig.empty and fig.notes == []
    assert fig.caption.endswith("Source: difficulty_net: mean over confirmation seeds 5, 6; "
                                "ce: mean over confirmation seeds 5, 6.")
    single = load_report_data(write_experiment(tmp_path / "exp", confirm=False))
    # the search trial the method chose, at the epoch it selected
    assert _draw(figures_classes.per_class, single).caption.endswith(
        "Source: difficulty_net: search trial dn_1, one seed, epoch 2; ce: search trial ce_2, "
        "one seed, epoch 2.")
    no_counts = dataclasses.replace(data, classes=None, notes={"classes": "no counts here"})
    fig = _draw(figures_classes.per_class, no_counts)
    assert fig.empty and fig.notes == ["no counts here"]


def test_learned_weights_are_those_of_difficulty_net_s_chosen_trial(data):
    fig = _draw(figures_classes.learned_weights, data)
    assert not fig.empty
    # dn_1 was best in the search; the confirmation chose dn_2
    assert fig.caption.startswith("Difficulty-Net's chosen config (search trial dn_2): ")


@pytest.mark.parametrize(("change", "why"), [
    ({"methods": ["ce"]}, "no Difficulty-Net in this experiment"),
    ({"trials": []}, "its trial recorded no class weights"),
    ({"classes": None}, "class counts unavailable"),
])
def test_learned_weights_that_cannot_be_drawn_say_why(data, change, why):
    fig = _draw(figures_classes.learned_weights, dataclasses.replace(data, **change))
    assert fig.empty and fig.notes == [why]


def test_a_method_with_one_sampled_parameter_still_gets_its_importance(data):
    one = [{k: v for k, v in r.items() if k != "config/optim.weight_decay"}
           for r in data.summary]
    figs = figures_optuna.method_figures(dataclasses.replace(data, summary=one), "ce")
    assert [f.key for f in figs if not f.empty] == ["5-importance-ce", "5-slice-ce"]


def test_the_fixture_is_what_the_figures_read(data):
    """Guards the experiment above: both methods confirmed, four classes in three groups."""
    assert [(r["method"], r["trial_id"], r["confirmed"]) for r in data.rows] == [
        ("difficulty_net", "dn_2", True), ("ce", "ce_2", True)]
    assert data.class_order() == [0, 1, 2, 3] and data.notes == {}
    assert json.loads(json.dumps(data.meta))["budget"]["max_epochs"] == 2
