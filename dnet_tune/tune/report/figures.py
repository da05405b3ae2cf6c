"""The report's figures from the experiment's own rows: curves, comparison, classes, weights.

Drawn with matplotlib's object API (no pyplot: no global figure state, no display needed) and
rendered to PNG at once, inside our style, so nothing a caller does later changes them. A panel
that has nothing to show says why, on the figure itself: a PNG looked at alone must not be
mistaken for "zero" or "all failed". The Optuna-based figures are in `figures_optuna`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dnet_tune.shot_groups import SHOT_GROUPS, limits_label
from dnet_tune.tune.report.data import ReportData, method_colour

DPI = 150  # rendered at 1.5x the size the HTML shows them: crisp on high-density screens
WIDTH = 12.0  # inches; the HTML shows 100 px per inch, so a full-width figure is 1200 px
# matplotlib types its rc keys as one Literal union; a plain dict of them is fine at runtime
STYLE: Any = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
              "legend.fontsize": 9, "xtick.labelsize": 9, "ytick.labelsize": 9,
              "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
              "grid.alpha": 0.3, "grid.linewidth": 0.6, "figure.facecolor": "white",
              "savefig.facecolor": "white"}
GROUP_SHADES = dict(zip(SHOT_GROUPS, ("#e8eef7", "#f4f4f4", "#fbeee6"), strict=True))
FADED = 0.25


@dataclass
class Figure:
    key: str  # file stem of the PNG, and the HTML anchor
    section: str
    title: str
    caption: str
    png: bytes
    width_px: int  # how wide the HTML shows it (100 px per inch of the figure)
    notes: list[str] = field(default_factory=list)  # what could not be drawn, and why
    empty: bool = False  # nothing drawn: the image is the note itself


@contextmanager
def style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def render(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.12)
    return out.getvalue()


def new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), layout="constrained")


def note(ax: Any, text: str) -> None:
    """An empty panel's reason, where its plot would have been."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10, color="#444444",
            transform=ax.transAxes, bbox={"boxstyle": "round", "fc": "#fff8e1", "ec": "#e0c060"})


def shown_width(png: bytes) -> int:
    """HTML width of a rendered PNG at 100 px per figure inch ("tight" bounding boxes change
    the size a figure was made with, so it is read back from the PNG header)."""
    pixels = int.from_bytes(png[16:20], "big")
    return round(pixels * 100 / DPI)


def finish(key: str, section: str, title: str, caption: str, fig: Any,
           notes: list[str]) -> Figure:
    png = render(fig)
    return Figure(key, section, title, caption, png, shown_width(png), notes)


def note_only(key: str, section: str, title: str, caption: str, notes: list[str],
              width: float = WIDTH) -> Figure:
    """A figure with nothing to draw: a strip that says why (small: no wall of white)."""
    text = "\n".join(dict.fromkeys(n for n in notes if n)) or "nothing to draw"
    fig = new_figure(width, 0.45 + 0.25 * (text.count("\n") + 1))
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"{title}: nothing to draw\n{text}", ha="center", va="center",
            fontsize=10, color="#444444", transform=ax.transAxes,
            bbox={"boxstyle": "round", "fc": "#fff8e1", "ec": "#e0c060"})
    out = finish(key, section, title, caption, fig, notes)
    out.empty = True
    return out


def percent_labels(values: list[float]) -> list[str]:
    """Fractions as percent tick labels, with as many decimals as the ticks need to show their
    own values (0.825 is "82.5%", not "82%"), the same number on every tick of the axis."""
    percents = [100 * v for v in values]
    decimals = next((d for d in range(4)
                     if all(abs(round(p, d) - p) < 1e-6 for p in percents)), 4)
    return [f"{p:.{decimals}f}%" for p in percents]


def percent_axis(axis: Any) -> None:
    from matplotlib.ticker import Formatter

    class Percent(Formatter):
        def format_ticks(self, values: Any) -> list[str]:  # all of an axis's ticks at once
            return percent_labels(list(values))

        def __call__(self, x: float, pos: int | None = None) -> str:
            return percent_labels([x])[0]

    axis.set_major_formatter(Percent())


# --------------------------------------------------------------------------- 1 learning curves

def _status_counts(trials: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    order = ["finished", "stopped", "diverged", "errored"]
    parts = [f"{counts[s]} {s}" for s in order if s in counts]
    parts += [f"{n} {s}" for s, n in sorted(counts.items()) if s not in order]
    return f"{len(trials)} trials: " + ", ".join(parts) if trials else "no trials"


def learning_curves(d: ReportData) -> Figure:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    methods = d.methods
    if not any(d.epochs_of(t["trial_id"]) for t in d.summary):
        whys = [f"{m}: {_no_curve_reason(d, d.trials_of(m))}" for m in methods]
        return note_only("1-learning-curves", "Learning curves", "Validation accuracy per epoch",
                         "", whys or ["no trials in this experiment"])
    ncols = min(3, len(methods))
    nrows = math.ceil(len(methods) / ncols)
    fig = new_figure(WIDTH, 3.1 * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    rungs = d.rungs
    top = d.max_epochs
    stage1 = float(d.budget.get("max_epochs") or 0)
    stage2 = bool(top and stage1 and top > stage1)
    notes = []
    for ax, method in zip(axes.flat, methods, strict=False):
        trials = d.trials_of(method)
        colour = method_colour(method)
        chosen = (d.row_for(method) or {}).get("trial_id")
        drawn = 0
        for t in sorted(trials, key=lambda t: t["trial_id"] == chosen):  # chosen on top
            rows = [r for r in d.epochs_of(t["trial_id"]) if r.get("val_acc") is not None]
            if not rows:
                continue
            drawn += 1
            xs, ys = [r["epoch"] for r in rows], [r["val_acc"] for r in rows]
            status = t["status"]
            is_chosen = t["trial_id"] == chosen
            ax.plot(xs, ys, color=colour, lw=2.6 if is_chosen else 1.2,
                    alpha=FADED if status == "stopped" else 0.9, marker="o", ms=2.5,
                    zorder=3 if is_chosen else 2)
            if status == "diverged" or any(r.get("diverged") for r in rows):
                ax.plot(xs[-1], ys[-1], "x", color="#d62728", ms=9, mew=2.2, zorder=4)
            elif status == "errored":
                ax.plot(xs[-1], ys[-1], "X", color="black", ms=8, zorder=4)
        ax.set_title(f"{method}\n{_status_counts(trials)}", color=colour, fontsize=10)
        if drawn == 0:
            why = _no_curve_reason(d, trials)
            notes.append(f"{method}: {why}")
            note(ax, why)
            continue
        for r in rungs:
            ax.axvline(r, color="#555555", ls=":", lw=1, zorder=1)
        if stage2 and top:
            ax.axvspan(stage1 + 0.5, top + 0.3, color="#eeeeee", zorder=0, lw=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if top:
            ax.set_xlim(0.7, top + 0.3)
        ax.set_ylim(-0.03, 1.03)  # a diverged trial ends at 0: keep its marker whole
        percent_axis(ax.yaxis)
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        if ax.axison:
            ax.set_ylabel("val accuracy")
    for ax in list(axes.flat)[len(methods):]:
        ax.set_axis_off()
    seen = {t["status"] for t in d.summary}
    keys = [
        (bool(d.rows), Line2D([], [], color="0.3", lw=2.6, label="chosen config")),
        ("finished" in seen, Line2D([], [], color="0.3", lw=1.2, label="finished")),
        ("stopped" in seen, Line2D([], [], color="0.3", lw=1.2, alpha=FADED,
                                   label="stopped by ASHA")),
        ("diverged" in seen, Line2D([], [], color="#d62728", marker="x", ls="", ms=8, mew=2,
                                    label="diverged")),
        ("errored" in seen, Line2D([], [], color="black", marker="X", ls="", ms=7,
                                   label="errored (at its last epoch)")),
        (bool(rungs), Line2D([], [], color="#555555", ls=":", label="ASHA rungs (epoch "
                             + ", ".join(f"{r:g}" for r in rungs) + ")")),
        (stage2, Patch(color="#eeeeee", label="stage 2")),
    ]
    handles = [h for shown, h in keys if shown]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                   frameon=False)
    caption = ("Validation accuracy of every search trial after each epoch, one panel per method "
               "(each method has its own ASHA rungs and TPE study). Faded: stopped by ASHA at a "
               "rung; thick: the config the method chose. Budget: "
               f"{d.budget.get('max_epochs', '?')} epochs, grace period "
               f"{d.budget.get('grace_period', '?')}, reduction factor "
               f"{d.budget.get('reduction_factor', '?')}"
               + (f"; epochs {stage1 + 1:g}–{top:g} are stage 2 (shaded)." if stage2 and top
                  else "."))
    return finish("1-learning-curves", "Learning curves", "Validation accuracy per epoch",
                  caption, fig, notes)


def _no_curve_reason(d: ReportData, trials: list[dict[str, Any]]) -> str:
    if not trials:
        return "no trial of this method is in summary.parquet"
    if any(t.get("last_epoch") for t in trials) and "trials" in d.notes:
        return d.notes["trials"]
    errors = [t["error"] for t in trials if t.get("error")]
    first = f"; first error: {_short(errors[0], 90)}" if errors else ""
    return f"no trial reported an epoch ({_status_counts(trials)}){first}"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------- 2 comparison

def method_comparison(d: ReportData) -> Figure:
    rows = d.rows
    title = "Test accuracy by method"
    if not rows:
        return note_only("2-method-comparison", "Method comparison", title, "",
                         ["no result from any method: no trial reported a usable epoch"])
    fig = new_figure(WIDTH, max(3.0, 0.42 * len(rows) + 2.0))
    left, right = fig.subplots(1, 2, width_ratios=[1.0, 1.25])
    notes: list[str] = []
    _test_with_ci(left, d)
    _groups(right, d, notes)
    seeds = sorted({s for r in rows for s in r.get("seeds", [])})
    how = (f"mean over confirmation seeds {', '.join(map(str, seeds))}, error bars the 95% "
           f"t-interval, dots single seeds" if d.confirmed
           else "not confirmed: each method's best search trial, one seed, no interval")
    caption = (f"Test accuracy of each method's chosen config ({how}). Configs are chosen on "
               "validation accuracy (★: the winner by val); test is only reported. Right: the "
               "same by shot group.")
    return finish("2-method-comparison", "Method comparison", title, caption, fig, notes)


def _test_with_ci(ax: Any, d: ReportData) -> None:
    rows = d.rows
    winner = d.winner()
    ys = list(range(len(rows)))[::-1]  # first method on top
    for y, r in zip(ys, rows, strict=True):
        colour = method_colour(r["method"])
        ci = r["test_ci95"]
        has_ci = ci is not None and math.isfinite(ci)
        ax.errorbar(r["test_mean"], y, xerr=ci if has_ci else None, fmt="o", color=colour,
                    ms=8, capsize=5, lw=2, zorder=3)
        for v in r.get("test_by_seed", {}).values():
            ax.plot(v, y + 0.18, "o", color=colour, ms=3.5, alpha=0.6, zorder=2)
        label = f"{100 * r['test_mean']:.1f}" + (f" ± {100 * ci:.1f}" if has_ci else "")
        ax.annotate(label, (r["test_mean"], y), xytext=(0, -13), textcoords="offset points",
                    ha="center", va="top", fontsize=8.5, color=colour)
    ax.set_yticks(ys, [f"★ {r['method']}" if r["method"] == winner else r["method"]
                       for r in rows])
    for tick, r in zip(ax.get_yticklabels(), rows, strict=True):
        tick.set_color(method_colour(r["method"]))
    ax.set_ylim(-0.8, len(rows) - 0.4)
    lo = min(_finite_or(r["test_mean"], 1.0) - _finite_or(r["test_ci95"], 0.0) for r in rows)
    ax.set_xlim(max(0.0, lo - 0.08), 1.0)
    percent_axis(ax.xaxis)
    ax.set_xlabel("test accuracy")
    ax.set_title("chosen config per method")


def _finite_or(v: float, default: float) -> float:
    return v if isinstance(v, (int, float)) and math.isfinite(v) else default


def _groups(ax: Any, d: ReportData, notes: list[str]) -> None:
    rows = d.rows
    width = 0.8 / len(rows)
    sizes = {g: len(d.classes.get(g, [])) for g in SHOT_GROUPS} if d.classes else {}
    for i, r in enumerate(rows):
        xs = [k + (i - (len(rows) - 1) / 2) * width for k in range(len(SHOT_GROUPS))]
        vals = [r[f"test_{g}"] for g in SHOT_GROUPS]
        ok = [(x, v) for x, v in zip(xs, vals, strict=True) if v is not None and math.isfinite(v)]
        ax.bar([x for x, _ in ok], [v for _, v in ok], width=width * 0.92,
               color=method_colour(r["method"]), label=r["method"])
    empty = [g for g in SHOT_GROUPS if all(not finite(r[f"test_{g}"]) for r in rows)]
    for g in empty:
        k = SHOT_GROUPS.index(g)
        ax.text(k, 0.5, "no classes\nin this group", ha="center", va="center", fontsize=9,
                color="#666666")
        notes.append(f"shot group '{g}' has no classes in this dataset")
    labels = [f"{g}\n({sizes[g]} class{'' if sizes[g] == 1 else 'es'})" if g in sizes else g
              for g in SHOT_GROUPS]
    ax.set_xticks(range(len(SHOT_GROUPS)), labels)
    ax.set_ylim(0, 1.0)
    percent_axis(ax.yaxis)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"by shot group ({limits_label()} training images)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=min(len(rows), 3),
              frameon=False)


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
