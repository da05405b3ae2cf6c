"""`dnet-tune report <experiment> --html FILE --png DIR`: the figures, in one file or as PNGs.

The HTML is one self-contained file (figures inline as base64 PNG, no scripts, no network), so
it can be mailed, attached to a ticket or opened from a bucket years later. It is laid out for a
1280 px wide window: figures are drawn at 100 px per inch and never scaled up.
"""

from __future__ import annotations

import base64
import html
import sys
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from dnet_tune.console import pct
from dnet_tune.errors import UserError
from dnet_tune.fileio import atomic_write, atomic_write_text
from dnet_tune.shot_groups import SHOT_GROUPS
from dnet_tune.tune.report import figures, figures_classes, figures_optuna
from dnet_tune.tune.report.data import ReportData, load_report_data, method_colour
from dnet_tune.tune.report.text import KEY_PARAMS, _fmt, difference_line

SECTIONS = ("Learning curves", "Method comparison", "Per-class accuracy", "Learned class weights",
            "Parameters")


def build_figures(d: ReportData) -> list[figures.Figure]:
    """Every figure; one that fails to draw becomes a note naming the error, not a lost report
    (the error is printed on stderr too, so it is not silent)."""
    makers: list[tuple[str, str, Callable[[], list[figures.Figure]]]] = [
        ("1-learning-curves", "Learning curves", lambda: [figures.learning_curves(d)]),
        ("2-method-comparison", "Method comparison", lambda: [figures.method_comparison(d)]),
        ("3-per-class", "Per-class accuracy", lambda: [figures_classes.per_class(d)]),
        ("4-learned-weights", "Learned class weights",
         lambda: [figures_classes.learned_weights(d)]),
    ]
    makers += [(f"5-importance-{m}", "Parameters", partial(figures_optuna.method_figures, d, m))
               for m in d.methods]
    out: list[figures.Figure] = []
    for key, section, make in makers:
        try:
            with figures.style():
                out.extend(make())
        except Exception as exc:  # a bug in one figure must not cost the whole report
            why = f"this figure could not be drawn: {type(exc).__name__}: {exc}"
            print(f"dnet-tune: warning: {key}: {why}\n{traceback.format_exc()}", file=sys.stderr)
            with figures.style():
                out.append(figures.note_only(key, section, key, "", [why]))
    return out


def write_pngs(figs: list[figures.Figure], folder: str) -> list[Path]:
    out = Path(folder)
    written = []
    for f in figs:
        path = out / f"{f.key}.png"
        atomic_write(path, partial(Path.write_bytes, data=f.png))
        written.append(path)
    return written


CSS = """
body { font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #222; margin: 0; background: #fafafa; }
main { max-width: 1236px; margin: 0 auto; padding: 16px 12px 40px; background: #fff; }
h1 { font-size: 24px; margin: 4px 0 2px; } h2 { font-size: 19px; margin: 28px 0 8px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #555; margin: 0 0 10px; } .banner { background: #fff3cd; border: 1px solid #e0c060;
  padding: 8px 12px; border-radius: 4px; margin: 10px 0; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e5e5; text-align: right; }
th { background: #f3f3f3; font-weight: 600; } td.l, th.l { text-align: left; }
td, th { white-space: nowrap; } td.wrap { white-space: normal; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
          margin-right: 6px; vertical-align: -1px; }
figure { margin: 12px 0 22px; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: #444; font-size: 14px; max-width: 1180px; margin-top: 4px; }
.grid { display: flex; flex-wrap: wrap; gap: 8px 20px; align-items: flex-start; }
.grid figure { margin: 6px 0 12px; }
.notes { color: #7a5b00; font-size: 14px; } code { font-size: 13px; }
"""


def _esc(v: Any) -> str:
    return html.escape(str(v))


def summary_table(d: ReportData) -> str:
    if not d.rows:
        counts: dict[str, int] = {}
        for t in d.summary:
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        errors = [t["error"] for t in d.summary if t.get("error")]
        how = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
        first = f"; first error: <code>{_esc(errors[0])}</code>" if errors else ""
        return (f"<p class='banner'>No method has a result: no trial reported a usable epoch "
                f"({_esc(how)}){first}.</p>")
    winner = d.winner()
    head = ("<tr><th class='l'>method</th><th>val</th><th>test ± 95% CI</th>"
            + "".join(f"<th>{g}</th>" for g in SHOT_GROUPS)
            + "<th>trials</th><th class='l'>trial statuses</th>"
            "<th class='l'>chosen trial and key parameters</th></tr>")
    body = []
    for r in d.rows:
        ci = r["test_ci95"]
        test = pct(r["test_mean"], 1) + (f" ± {100 * ci:.1f}" if figures.finite(ci) else "")
        statuses: dict[str, int] = {}
        for t in d.trials_of(r["method"]):
            statuses[t["status"]] = statuses.get(t["status"], 0) + 1
        params = " ".join(f"{label}={_fmt(r['config'][k])}" for k, label in KEY_PARAMS.items()
                          if k in r.get("config", {}))
        mark = " ★" if r["method"] == winner else ""
        groups = "".join(f"<td>{pct(r[f'test_{g}'], 1)}</td>" for g in SHOT_GROUPS)
        body.append(
            f"<tr><td class='l'><span class='swatch' style='background:"
            f"{method_colour(r['method'])}'></span>{_esc(r['method'])}{mark}</td>"
            f"<td>{pct(r['val_mean'], 1)}</td><td>{test}</td>{groups}"
            f"<td>{r['trials']}</td><td class='l'>"
            f"{_esc(', '.join(f'{n} {s}' for s, n in sorted(statuses.items())))}</td>"
            f"<td class='l wrap'><code>{_esc(r['trial_id'])}</code> {_esc(params)}</td></tr>")
    diff = difference_line(d.diff)
    return (f"<table>{head}{''.join(body)}</table><p class='sub'>★ the winner: the best mean "
            f"validation accuracy of the chosen configs; test is reported, never used to "
            f"choose.</p>" + (f"<p>{_esc(diff)}</p>" if diff else ""))


def _figure_html(f: figures.Figure) -> str:
    data = base64.b64encode(f.png).decode()
    notes = "" if f.empty else "".join(f"<div class='notes'>note: {_esc(n)}</div>"
                                       for n in f.notes)
    alt = f"{f.title}: {'; '.join(f.notes)}" if f.empty else f.title
    # as wide as its image, so a caption never pushes a neighbour onto the next row
    empty = " class='empty'" if f.empty else ""
    return (f"<figure id='{_esc(f.key)}'{empty} style='width:{f.width_px}px'>"
            f"<img alt='{_esc(alt)}' width='{f.width_px}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_esc(f.caption)}</figcaption>{notes}</figure>")


def render_html(d: ReportData, figs: list[figures.Figure]) -> str:
    meta = d.meta
    rows_by_method = {r["method"]: r for r in d.rows}
    confirmed = (f"confirmed: top {meta.get('confirm', {}).get('top')} per method × seeds "
                 f"{', '.join(map(str, meta.get('confirm', {}).get('seeds', [])))}"
                 if d.confirmed else "not confirmed: one seed per method, no intervals")
    banners = []
    if d.status != "finished":
        banners.append(f"This experiment's status is <b>{_esc(d.status)}</b>: the numbers "
                       f"cover the trials that had reported when its files were written.")
    banners += [_esc(d.notes[k]) for k in ("confirm", "trials") if k in d.notes]
    parts = [f"<h1>{_esc(meta.get('experiment', Path(d.exp).name))}: "
             f"{_esc(meta.get('dataset', '?'))}</h1>",
             f"<p class='sub'>{_esc(', '.join(d.methods))} · budget per method "
             f"{_esc(d.budget.get('trials', '?'))} trials × up to "
             f"{_esc(d.budget.get('max_epochs', '?'))} epochs (ASHA) · {_esc(confirmed)} · "
             f"chosen on validation, test reported · <code>{_esc(d.exp)}</code></p>",
             *(f"<div class='banner'>{b}</div>" for b in banners),
             "<h2>Summary</h2>", summary_table(d)]
    for section in SECTIONS:
        inside = [f for f in figs if f.section == section]
        if not inside:
            continue
        parts.append(f"<h2>{_esc(section)}</h2>")
        if section != "Parameters":
            parts += [_figure_html(f) for f in inside]
            continue
        for method in d.methods:
            mine = [f for f in inside if f.key.endswith(f"-{method}")]
            if not mine:
                continue
            tag = "" if method in rows_by_method else " (no result)"
            parts.append(f"<h3><span class='swatch' style='background:{method_colour(method)}'>"
                         f"</span>{_esc(method)}{tag}</h3><div class='grid'>"
                         + "".join(_figure_html(f) for f in mine) + "</div>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class='sub'>dnet-tune report, {stamp}; git {_esc(meta.get('git_sha'))}"
                 f"</p>")
    title = f"{meta.get('experiment', '')} report"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_esc(title)}</title><style>{CSS}</style></head><body><main>"
            + "\n".join(parts) + "</main></body></html>\n")


def make_report(exp: str, html_path: str | None, png_dir: str | None) -> list[str]:
    """Write what was asked; returns one line per output for the console."""
    if html_path is not None and Path(html_path).is_dir():
        raise UserError(f"--html '{html_path}' is a folder; give a file name, e.g. report.html")
    if png_dir is not None and Path(png_dir).exists() and not Path(png_dir).is_dir():
        raise UserError(f"--png '{png_dir}' is a file; give a folder")
    d = load_report_data(exp)
    figs = build_figures(d)
    lines = []
    if html_path is not None:
        atomic_write_text(html_path, render_html(d, figs))
        lines.append(f"wrote {html_path} ({len(figs)} figures)")
    if png_dir is not None:
        written = write_pngs(figs, png_dir)
        lines.append(f"wrote {len(written)} PNG files to {png_dir}/")
    return lines
