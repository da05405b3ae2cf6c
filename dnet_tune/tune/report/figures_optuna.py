"""Which hyperparameters mattered, per method: Optuna's importance, slice and parallel plots.

Each method's study is rebuilt in memory from summary.parquet (one finished trial per search
trial, valued by its best val accuracy, with the distributions of the space file) rather than
read from the search's optuna.journal: the journal values a trial by the val accuracy Ray saw
last (0.0 for a diverged one), not by the best val trials are ranked and chosen by, and older or
bucket-stored experiments have no journal. The study goes to `optuna.visualization.matplotlib`
unchanged; we only restyle what it draws. Importance is
PED-ANOVA, Optuna's default, because it also weighs conditional parameters (a meta interval that
exists only for full meta-gradients, the second Difficulty-Net layer's width), which fANOVA
drops.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from dnet_tune.tune.report.data import ReportData, method_colour
from dnet_tune.tune.report.figures import Figure, note_only, render, shown_width, style

TARGET = "best val accuracy"
MAX_PARALLEL = 6  # more axes than this and a parallel-coordinate plot stops being readable
SECTION = "Parameters"


def study_for(d: ReportData, method: str) -> tuple[Any | None, str]:
    """The method's search as an in-memory Optuna study, or why there is none."""
    import optuna

    if d.space is None:
        return None, d.notes.get("space", "no search space")
    dists = d.space.distributions(method)
    if not dists:
        return None, "no sampled parameters (every one is fixed)"
    trials, skipped = [], 0
    for r in d.trials_of(method):
        if r.get("best_val_acc") is None:
            continue
        params = {k: r[f"config/{k}"] for k in dists if r.get(f"config/{k}") is not None}
        if not params:
            continue
        try:
            trials.append(optuna.trial.create_trial(
                value=float(r["best_val_acc"]), params=params,
                distributions={k: dists[k] for k in params}))
        except ValueError:  # a value outside the space file as it is now
            skipped += 1
    if len(trials) < 2:
        have = "no trial" if not trials else "only one trial"
        return None, f"{have} with a result and sampled parameters; importance needs 2 or more"
    if len({t.value for t in trials}) < 2:
        return None, "every trial has the same val accuracy: nothing to attribute"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", study_name=method)
    study.add_trials(trials)
    return study, (f"{skipped} trial(s) left out: values outside the current space file"
                   if skipped else "")


@contextmanager
def _optuna_plot() -> Iterator[Any]:
    """Optuna's plots use pyplot and switch it to ggplot: keep both inside this block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning

    with style(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        # "some regimes have less than 2 trials": the caption already says the ranking is rough
        warnings.filterwarnings("ignore", module="optuna")
        try:
            yield plt
        finally:
            plt.close("all")


def _note_figure(key: str, title: str, why: str, width: float = 6.0) -> Figure:
    with style():
        return note_only(key, SECTION, title, "", [why], width)


def method_figures(d: ReportData, method: str) -> list[Figure]:
    """Importance, val against the two most important parameters, parallel coordinates."""
    import optuna

    colour = method_colour(method)
    study, why = study_for(d, method)
    if study is None:
        return [_note_figure(f"5-importance-{method}", f"{method}: parameter importance", why)]
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = list(optuna.importance.get_param_importances(study, evaluator=evaluator))
    n = len(study.trials)
    rough = " With this few trials the ranking is rough." if n < 20 else ""
    notes = [why] if why else []
    out = []
    with _optuna_plot():
        ax = optuna.visualization.matplotlib.plot_param_importances(
            study, evaluator=evaluator, target_name=TARGET)
        _restyle(ax, f"{method}: importance (PED-ANOVA, {n} trials)",
                 (4.6, 0.26 * len(ranked) + 1.4))
        for bar in ax.patches:
            bar.set_color(colour)
        legend = ax.get_legend()
        if legend is not None:  # one objective: its legend only repeats the axis label
            legend.remove()
        out.append(_figure(f"5-importance-{method}", f"{method}: parameter importance",
                           f"How much of the variation of {TARGET} among the top trials each "
                           f"parameter explains.{rough}", ax.figure, notes))
        top2 = ranked[:2]
        axes = optuna.visualization.matplotlib.plot_slice(study, params=top2, target_name=TARGET)
        first: Any = axes if not hasattr(axes, "flat") else axes.flat[0]
        for dots in (c for a in first.figure.axes for c in a.collections):
            dots.set_cmap(visible_blues())  # the first trials were white on white
        # one parameter: Optuna's colour bar sits outside any grid and constrained layout
        # divides by zero on it; the tight layout handles that figure
        _restyle(first, f"{method}: the two most important parameters",
                 (2.5 * len(top2) + 0.7, 3.0), figure_title=True,
                 layout="constrained" if len(top2) > 1 else "tight")
        out.append(_figure(f"5-slice-{method}", f"{method}: val against {' and '.join(top2)}",
                           "Each dot is a trial, coloured by its start order (darker = later).",
                           first.figure, []))
        if len(ranked) >= 2:
            shown = ranked[:MAX_PARALLEL]
            ax = optuna.visualization.matplotlib.plot_parallel_coordinate(
                study, params=shown, target_name=TARGET)
            ax.set_title("")  # Optuna's own centred title; ours goes on the left
            for lines in ax.collections:  # the lightest Blues are invisible on white
                lines.set_cmap(visible_blues())
            _restyle(ax, f"{method}: parallel coordinates", (min(11.0, 1.6 * len(shown) + 2.4),
                                                              3.4), layout=None)
            more = (f" The {MAX_PARALLEL} most important of {len(ranked)} parameters."
                    if len(ranked) > MAX_PARALLEL else "")
            out.append(_figure(f"6-parallel-{method}", f"{method}: parallel coordinates",
                               f"One line per trial through its parameter values, coloured by "
                               f"{TARGET}.{more}", ax.figure, []))
        else:
            out.append(_note_figure(f"6-parallel-{method}", f"{method}: parallel coordinates",
                                    "one sampled parameter: nothing to connect", 12.0))
    return out


def _figure(key: str, title: str, caption: str, fig: Any, notes: list[str]) -> Figure:
    png = render(fig)
    return Figure(key, SECTION, title, caption, png, shown_width(png), notes)


def visible_blues() -> Any:
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps["Blues"](np.linspace(0.3, 1.0, 256)))


def _plain_log_ticks(axis: Any) -> None:
    """A few plain labels (0.02, 0.05, 0.1) instead of a crowd of 2×10⁻² minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    decades = math.log10(hi / lo) if lo > 0 else 99.0
    if decades < 1:  # LogLocator falls back to a tick every 0.005 here
        axis.set_major_locator(MaxNLocator(nbins=3, steps=[1, 2, 5, 10]))
    else:
        subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=6))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _restyle(ax: Any, title: str, size: tuple[float, float], figure_title: bool = False,
             layout: str | None = "constrained") -> None:
    fig = ax.figure
    fig.set_size_inches(*size)
    fig.set_facecolor("white")
    for a in fig.axes:
        a.set_facecolor("white")
        a.grid(True, alpha=0.3)
        a.title.set_fontsize(10)
        for axis in (a.xaxis, a.yaxis):
            if axis.get_scale() == "log":
                _plain_log_ticks(axis)
    if figure_title:
        fig.suptitle(title, fontsize=11)
    else:
        ax.set_title(title, fontsize=11, loc="left")
    if layout:  # not for the parallel plot: its extra axes break constrained layout
        fig.set_layout_engine(layout)
