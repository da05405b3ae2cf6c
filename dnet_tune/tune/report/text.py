"""The report as text: the comparison table, the difference line, the chosen configs.

Printed at the end of a search and by `dnet-tune report`; the HTML page reuses its labels.
"""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dnet_tune.console import pct
from dnet_tune.shot_groups import SHOT_GROUPS
from dnet_tune.tune.plan import algorithm_note

# short labels keep the table readable in an 80-column log; dn.lr and optim.lr must stay apart
KEY_PARAMS = {"method.lam": "λ", "dn.lr": "dn_lr", "dn.hidden": "dn", "dn.input_mode": "in",
              "method.driver_target": "target", "method.meta_grad": "grad",
              "method.meta_interval": "k", "method.base_loss": "base", "optim.lr": "lr",
              "method.cdb_tau": "τ", "method.focal_gamma": "γ", "method.cb_beta": "β"}



UNCONFIRMED = "not confirmed"


def confirmation_note(rows: list[dict[str, Any]]) -> str:
    """What a title adds when its val and test are single search trials, not confirmed means:
    the numbers look the same, so the words must differ."""
    unconfirmed = [r["method"] for r in rows if not r.get("confirmed", True)]
    if not unconfirmed:
        return ""
    if len(unconfirmed) == len(rows):
        return f" ({UNCONFIRMED}: one trial each, at its best epoch)"
    return f" (partly confirmed: {', '.join(unconfirmed)} {UNCONFIRMED})"


def comparison_table(rows: list[dict[str, Any]], title: str) -> Table:
    """One row per method: confirmed val, test mean ± 95% CI, shot groups, trials, compute.

    One decimal and a light frame keep it inside 80 columns (CI logs, narrow terminals); DN's
    label, when it names a base loss, takes two lines. Without confirmation the val and
    test columns are one trial's best epoch, and their headers say so.
    """
    # plain text: a status such as ' [interrupted]' is not a markup tag
    table = Table(title=Text(title, style="table.title"), box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False, collapse_padding=True)
    confirmed = all(r.get("confirmed", True) for r in rows)
    # two-line headers: "val 1 run" in one line would squeeze the method column below its names
    heads = ("val", "test ±95%CI") if confirmed else ("val\n1 run", "test\n1 run")
    groups = [{"medium": "med"}.get(g, g) for g in SHOT_GROUPS]  # "med": within 80 columns
    for col in ("method", *heads, *groups, "trials", "compute"):
        table.add_column(col, justify="left" if col == "method" else "right",
                         no_wrap=col != "method")
    for r in rows:
        ci = r["test_ci95"]
        test = pct(r["test_mean"], 1) + (f" ±{100 * ci:.1f}" if _finite(ci) else "")
        table.add_row(_cell_label(r), pct(r["val_mean"], 1), test,
                      *(pct(r[f"test_{g}"], 1) for g in SHOT_GROUPS), str(r["trials"]),
                      _compute(r))
    return table


def _cell_label(row: dict[str, Any]) -> str:
    """The label on two lines (`difficulty_net` / `+balanced_softmax`): in one line it would be
    cut to fit 80 columns, and the cut part is what the label is there to say."""
    label = str(row.get("label", row["method"]))
    return label.replace(" (+", "\n+", 1).removesuffix(")") if " (+" in label else label


def difference_line(diff: dict[str, Any] | None) -> str:
    if diff is None:
        return ""
    ci = diff["diff_ci95"]
    seeds = diff["seeds"]
    head = (f"{diff.get('label', diff['method'])} − {diff['baseline']} (best baseline by val) "
            f"on test: {100 * diff['diff_mean']:+.2f}")
    base = (f"; {diff['method']} ran on {diff['base_loss']}, which is not among the compared "
            f"methods: the difference includes {diff['base_loss']}'s own effect"
            if diff.get("base_not_compared") else "")
    if not _finite(ci):
        return (f"{head} points, one run each: no interval, confirm over seeds to compare"
                f"{base}")
    verdict = ("significant" if diff["significant"]
               else "no significant difference (the interval contains 0)")
    return (f"{head} ± {100 * ci:.2f} points (95% CI, paired over seeds "
            f"{', '.join(map(str, seeds))}): {verdict}{base}")


def _compute(r: dict[str, Any]) -> str:
    seconds = float(r.get("trial_seconds", 0.0)) + float(r.get("confirm_seconds", 0.0))
    gpu = float(r.get("gpu_seconds", 0.0)) + float(r.get("confirm_gpu_seconds", 0.0))
    text = f"{seconds / 60:.1f} min"
    # GPU-hours on a second line: on one, the column takes the method names' room in 80 columns
    return text + (f"\n{gpu / 3600:.2f} GPU-h" if gpu > 0 else "")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v: Any) -> str:
    """Short values for 80 columns; DN widths arrive as JSON text ("[64, 128]")."""
    if isinstance(v, float):
        return f"{v:.4g}" if 0.9 <= v < 1 else f"{v:.2g}"  # β = 0.9999 must not read as 1
    if isinstance(v, str) and v.startswith("["):
        return v.replace(" ", "")  # DN widths stored as JSON text: "[64,128]"
    return {"relative": "rel", "absolute": "abs", "detached": "det"}.get(str(v), str(v))


def status_line(rep: dict[str, Any]) -> str:
    """One line for a search that is not finished: how far it got, and what to do."""
    head = (f"{rep['experiment']} is {rep['status']}: {rep.get('trials_ended', 0)} of "
            f"{rep.get('trials_budget', '?')} trials ended, numbers are provisional (best so "
            f"far, not confirmed)")
    if rep["status"] == "interrupted":
        return f"{head}; continue with: dnet-tune search --resume {rep['experiment']}"
    return head


def print_report(console: Console, reports: list[dict[str, Any]], where: str) -> None:
    """`dnet-tune report`: per experiment, the comparison table, the difference, the choices."""
    if not reports:
        console.print(f"no finished experiments in '{where}'", soft_wrap=True)
        return
    for rep in reports:
        status = "" if rep["status"] == "finished" else f" [{rep['status']}]"
        if rep["status"] != "finished":
            console.print(status_line(rep), soft_wrap=True)  # a command to copy: unbroken
        if not rep["rows"]:
            continue
        note = algorithm_note(rep.get("sampler", "tpe"), rep.get("scheduler", "asha"))
        console.print(comparison_table(rep["rows"], f"{rep['dataset']}: {rep['experiment']}"
                                                    f"{note}{confirmation_note(rep['rows'])}"
                                                    f"{status}"))
        if rep["difference"] is not None:
            console.print(difference_line(rep["difference"]))
        for r in rep["rows"]:
            params = " ".join(f"{label}={_fmt(r['config'][k])}"
                              for k, label in KEY_PARAMS.items() if k in r["config"])
            mark = " (winner)" if r["method"] == rep["winner"] else ""
            console.print(f"  {r['method']}{mark}: trial {r['trial_id']} {params}")
