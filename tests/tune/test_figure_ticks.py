"""Tick labels show the values at their positions: the method-comparison panel once labelled
its 82.5% and 87.5% ticks "82%" and "88%"."""

from __future__ import annotations

import pytest

from dnet_tune.tune.report.figures import WIDTH, _test_with_ci, new_figure, percent_labels, style


class _Chosen:
    """What the comparison panel reads of a report: one method's chosen config."""

    confirmed = True

    def __init__(self, test_mean: float) -> None:
        self.rows = [{"method": "ce", "test_mean": test_mean, "test_ci95": 0.01,
                      "test_by_seed": {"1": test_mean - 0.01, "2": test_mean + 0.01}}]

    def winner(self) -> str:
        return "ce"


def _drawn_ticks(test_mean: float) -> list[tuple[float, str]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with style():
        fig = new_figure(WIDTH, 3.0)  # the method-comparison figure's size and panels
        FigureCanvasAgg(fig)
        left, _ = fig.subplots(1, 2, width_ratios=[1.0, 1.25])
        _test_with_ci(left, _Chosen(test_mean))
        fig.canvas.draw()
        lo, hi = left.get_xlim()
        return [(t.get_loc(), t.label1.get_text()) for t in left.xaxis.get_major_ticks()
                if lo <= t.get_loc() <= hi]


@pytest.mark.parametrize("test_mean", [0.87, 0.6, 0.95])
def test_comparison_ticks_show_their_values(test_mean):
    ticks = _drawn_ticks(test_mean)
    assert len(ticks) >= 3
    for loc, label in ticks:
        assert label.endswith("%")
        assert float(label[:-1]) == pytest.approx(100 * loc, abs=1e-9), ticks


def test_quarter_percent_steps_are_labelled_as_such():
    labels = [label for _, label in _drawn_ticks(0.87)]
    assert "82.5%" in labels and "87.5%" in labels, labels  # the axis from 78% to 100%


def test_percent_labels_use_the_fewest_decimals_every_tick_needs():
    assert percent_labels([0.8, 0.9, 1.0]) == ["80%", "90%", "100%"]
    assert percent_labels([0.8, 0.825, 0.8500000000000001]) == ["80.0%", "82.5%", "85.0%"]
    assert percent_labels([0.0, 0.2, 0.6000000000000001]) == ["0%", "20%", "60%"]
    assert percent_labels([0.12345]) == ["12.345%"]
