"""Per-class figures: test accuracy of the chosen configs and Difficulty-Net's learned weights.

Classes are always shown from the most to the fewest training images, with the shot groups as
shaded bands, because the whole point of a long-tailed method is what happens at the tail end.
"""

from __future__ import annotations

from typing import Any

from dnet_tune.shot_groups import SHOT_GROUPS
from dnet_tune.tune.report.compare import DN
from dnet_tune.tune.report.data import ReportData, method_colour
from dnet_tune.tune.report.figures import (
    GROUP_SHADES,
    WIDTH,
    Figure,
    finish,
    new_figure,
    note,
    note_only,
    percent_axis,
)

# --------------------------------------------------------------------------- 3 per class

def group_bands(ax: Any, d: ReportData, order: list[int], label_y: float | None) -> None:
    """Shaded spans of the shot groups over classes sorted by training count (contiguous)."""
    for g, start, end in _group_spans(order, d.group_of()):
        if g in GROUP_SHADES:
            ax.axvspan(start - 0.5, end - 0.5, color=GROUP_SHADES[g], zorder=0, lw=0)
            if label_y is not None:
                ax.text((start + end - 1) / 2, label_y, f"{g} ({end - start})", ha="center",
                        va="bottom", fontsize=9, color="#555555")


def _group_spans(order: list[int], group_of: dict[int, str]) -> list[tuple[str, int, int]]:
    """(group, first, end) of each run of classes in `order` that share a shot group."""
    spans: list[tuple[str, int, int]] = []
    for pos, c in enumerate(order):
        g = group_of.get(c, "")
        if spans and spans[-1][0] == g:
            spans[-1] = (g, spans[-1][1], pos + 1)
        else:
            spans.append((g, pos, pos + 1))
    return spans


def per_class(d: ReportData) -> Figure:
    dn_name = DN if DN in d.methods else None
    base = d.best_baseline()
    shown = [m for m in (dn_name, base) if m]
    order = d.class_order()
    series: dict[str, list[float]] = {}
    sources, notes = [], []
    for m in shown:
        values, how = d.per_class_test(m)
        if values is None:
            notes.append(how if how.startswith(m) else f"{m}: {how}")
        else:
            series[m] = values
            sources.append(f"{m}: {how}")
    title = "Per-class test accuracy"
    if order is None or not series:
        why = [d.notes.get("classes", "class counts unavailable")] if order is None else []
        if not shown:
            why.append("no method has a result")
        return note_only("3-per-class", "Per-class accuracy", title, "", why + notes)
    fig = new_figure(WIDTH, 5.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    _per_class_panels(top, bottom, d, order, series)
    caption = ("Per-class test accuracy of Difficulty-Net's chosen config and of the best "
               "baseline (by validation), classes sorted from the most to the fewest training "
               f"images; shaded: {' / '.join(SHOT_GROUPS)}-shot groups; grey dashed steps: "
               "training images per class (right axis). Below: the difference per class, each "
               "bar in the colour of the better method. "
               + ("Source: " + "; ".join(sources) + "." if sources else ""))
    return finish("3-per-class", "Per-class accuracy", title, caption, fig, notes)


def _per_class_panels(top: Any, bottom: Any, d: ReportData, order: list[int],
                      series: dict[str, list[float]]) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    xs = list(range(len(order)))
    small = len(order) <= 30
    for m, values in series.items():
        top.plot(xs, [values[c] for c in order], color=method_colour(m), lw=1.8 if small else 1,
                 marker="o" if small else None, ms=4, label=m, zorder=3)
    group_bands(top, d, order, label_y=1.03)
    top.set_ylim(0, 1.1)
    top.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    percent_axis(top.yaxis)
    top.set_ylabel("test accuracy")
    top.legend(loc="lower left", framealpha=0.9)
    counts = top.twinx()
    train = [d.classes["train"][c] for c in order] if d.classes else []
    counts.step(xs, train, where="mid", color="#999999", lw=1, ls="--", zorder=1)
    counts.set_yscale("log")
    if train:  # the steps stay in the lower part, under the accuracy lines' usual range
        counts.set_ylim(min(train) / 1.5, max(train) * 6)
    counts.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    counts.yaxis.set_minor_formatter(NullFormatter())
    counts.set_ylabel("training images (dashed)", color="#777777")
    counts.grid(False)
    counts.spines["right"].set_visible(True)
    group_bands(bottom, d, order, label_y=None)
    if len(series) == 2:
        a, b = list(series)
        diff = [series[a][c] - series[b][c] for c in order]
        # each bar in the colour of the method that is better on that class
        bottom.bar(xs, diff, color=[method_colour(a if v >= 0 else b) for v in diff], width=0.8)
        bottom.axhline(0, color="black", lw=0.8)
        bottom.set_ylabel(f"{a}\n− {b}", fontsize=9)
        percent_axis(bottom.yaxis)
    else:
        note(bottom, "only one method has per-class numbers: no difference to show")
    if small:
        bottom.set_xticks(xs, [f"{c}\n{d.classes['train'][c]}" if d.classes else str(c)
                               for c in order], fontsize=8)
        bottom.set_xlabel("class (and its training images), most to fewest")
    else:
        bottom.set_xlabel(f"{len(order)} classes, most to fewest training images")
    bottom.set_xlim(-0.6, len(order) - 0.4)


# --------------------------------------------------------------------------- 4 learned weights

def _weights_missing(d: ReportData, row: dict[str, Any] | None, order: list[int] | None,
                     epochs: list[dict[str, Any]]) -> str:
    if DN not in d.methods:
        return "no Difficulty-Net in this experiment"
    if row is None:
        return d.no_result(DN)
    if order is None:
        return d.notes.get("classes", "class counts unavailable")
    if not epochs:
        return d.notes.get("trials", "its trial recorded no class weights")
    return ""


def learned_weights(d: ReportData) -> Figure:
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    title = "Difficulty-Net: difficulty and class weights over epochs"
    row = d.row_for(DN)
    order = d.class_order()
    epochs = d.epochs_of(row["trial_id"]) if row else []
    epochs = [r for r in epochs if r.get("class_weight") and r.get("difficulty")]
    why = _weights_missing(d, row, order, epochs)
    if why:
        return note_only("4-learned-weights", "Learned class weights", title, "", [why])
    assert row is not None and order is not None and d.classes is not None
    fig = new_figure(WIDTH, 4.6)
    trial = row["trial_id"]
    prof, dif, wei = fig.subplots(1, 3, sharey=True, width_ratios=[0.9, 2, 2])
    train = d.classes["train"]
    ys = list(range(len(order)))
    # log scale: bars start at 1 image (0 has no place on it)
    prof.barh(ys, [train[c] - 1 for c in order], left=1, color="#999999", height=0.8)
    prof.set_xscale("log")
    prof.set_xlim(max(train) * 1.3, 0.8)
    prof.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    prof.xaxis.set_minor_formatter(NullFormatter())
    prof.set_xlabel("training images")
    group_of = d.group_of()
    spans = _group_spans(order, group_of)
    if len(order) <= 40:
        prof.set_yticks(ys, [f"{c} · {group_of.get(c, '')}" for c in order])
    else:  # one label per shot group: a hundred class ids would be a black smear
        prof.set_yticks([(a + b - 1) / 2 for _, a, b in spans],
                        [f"{g} ({b - a})" for g, a, b in spans])
    for _, a, _b in spans[1:]:
        for ax in (prof, dif, wei):
            ax.axhline(a - 0.5, color="black", lw=0.8, ls="--")
    prof.set_ylabel("class, most to fewest training images")
    prof.set_title("class frequency")
    names = [r["epoch"] for r in epochs]
    extent = (names[0] - 0.5, names[-1] + 0.5, len(order) - 0.5, -0.5)
    dmat = [[r["difficulty"][c] for r in epochs] for c in order]
    wmat = [[r["class_weight"][c] for r in epochs] for c in order]
    im = dif.imshow(dmat, aspect="auto", cmap="viridis", vmin=0, vmax=1, extent=extent,
                    interpolation="nearest")
    fig.colorbar(im, ax=dif, label="difficulty d", shrink=0.9)
    dif.set_title("difficulty d, end of each epoch")
    flat = [v for line in wmat for v in line]
    lo, hi = min(flat), max(flat)
    norm = TwoSlopeNorm(1.0, min(lo, 0.99), max(hi, 1.01))  # 1 = the mean weight
    im = wei.imshow(wmat, aspect="auto", cmap="RdBu_r", norm=norm, extent=extent,
                    interpolation="nearest")
    bar = fig.colorbar(im, ax=wei, label="class weight w (mean 1)", shrink=0.9)
    vmin, vmax = norm.vmin or lo, norm.vmax or hi  # ticks inside the norm's own range
    bar.set_ticks([vmin, (vmin + 1) / 2, 1.0, (1 + vmax) / 2, vmax],
                  labels=[f"{v:.2f}" for v in (vmin, (vmin + 1) / 2, 1.0, (1 + vmax) / 2,
                                                vmax)])
    wei.set_title("class weight w, end of each epoch")
    for ax in (dif, wei):
        ax.set_xlabel("epoch")
        ax.grid(False)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    caption = (f"Difficulty-Net's chosen config (search trial {trial}): the difficulty d it "
               "assigned to each class and the resulting class weight w at the end of each "
               "epoch (after its last Difficulty-Net step; w changes with every step within "
               "an epoch), beside the class-frequency profile. Red: weighted above the mean.")
    return finish("4-learned-weights", "Learned class weights", title, caption, fig, [])
