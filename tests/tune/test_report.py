"""What people look at after a search, on real experiments: `report --html/--png` (a smoke
search on a real local Ray, one whose every trial fails, and copies of the smoke results edited
the way an interrupted search or diverged and errored trials leave them), the TensorBoard event
files, and `--warm-start` from the smoke search's confirmed configs."""

from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser

import pyarrow.parquet as pq
import pytest
import yaml
from study_states import assert_studies_mirror
from tb_events import event_tags

from dnet_tune.fileio import table_to_rows
from dnet_tune.tune.report.data import asha_rungs
from dnet_tune.tune.storage import read_table, write_table

METHODS = ["difficulty_net", "ce"]
FIXED = ["1-learning-curves", "2-method-comparison", "3-per-class", "4-learned-weights"]
PAGE = 1236  # the HTML's content width: every figure must fit a 1280 px window
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_run(ray_local, tmp_path_factory, run_cli):
    """The smoke search: its experiment and what it printed."""
    storage = tmp_path_factory.mktemp("results")
    res = run_cli("search", "--dataset", "digits_lt", "--methods", ",".join(METHODS), "--smoke",
                  "--trials", 3, "--max-epochs", 3, "--grace-period", 1,
                  "--confirm-top", 1, "--confirm-seeds", 2, "--storage", storage, "--name",
                  "smoke", "--seed", 0)
    assert res["code"] == 0, res["err"]
    return storage / "smoke", str(res["out"])


@pytest.fixture(scope="module")
def smoke(smoke_run):
    return smoke_run[0]


def test_the_search_s_last_line_names_its_files_unbroken(smoke_run):
    """Captured output is no terminal, so the console assumes 80 columns: the paths to copy
    once broke there (`best_confi` / `g.yaml`)."""
    exp, out = smoke_run
    last = out.strip().splitlines()[-1]
    assert last.startswith("best: ") and len(last) > 80
    assert last.endswith(f"→ {exp}/best_config.yaml; every method's choice is in {exp}/best/")


class Figures(HTMLParser):
    """The report's <figure> elements: id, whether empty, the inline image and its width."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, str]] = {}
        self.external: list[str] = []
        self._current: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith("data:"):
                self.external.append(a[key])
        if tag == "figure":
            self._current = a["id"]
            self.figures[a["id"]] = {"class": a.get("class") or ""}
        elif tag == "img" and self._current:
            self.figures[self._current].update(src=a["src"], width=a["width"], alt=a["alt"])


def _report(run_cli, exp, tmp_path, *extra):
    html, png = tmp_path / "report.html", tmp_path / "plots"
    res = run_cli("report", exp, "--html", html, "--png", png, *extra)
    assert res["code"] == 0, res["err"]
    assert "warning" not in res["err"], res["err"]  # no figure failed to draw
    text = html.read_text()
    parsed = Figures(text)
    assert not parsed.external, parsed.external  # one self-contained file
    for key, fig in parsed.figures.items():
        data = base64.b64decode(fig["src"].removeprefix("data:image/png;base64,"))
        assert data.startswith(PNG), key
        assert (png / f"{key}.png").read_bytes() == data  # the PNG files are the same figures
        assert int(fig["width"]) <= PAGE, (key, fig["width"])
    assert sorted(p.stem for p in png.glob("*.png")) == sorted(parsed.figures)
    return text, parsed.figures


def _every_figure(figures, methods):
    for key in FIXED:
        assert key in figures, (key, sorted(figures))
    for m in methods:
        assert f"5-importance-{m}" in figures, (m, sorted(figures))


def test_a_smoke_experiment_gets_every_figure_drawn(smoke, run_cli, tmp_path):
    text, figures = _report(run_cli, smoke, tmp_path)
    _every_figure(figures, METHODS)
    for key in [*FIXED, *(f"{k}-{m}" for m in METHODS
                          for k in ("5-importance", "5-slice", "6-parallel"))]:
        assert figures[key]["class"] != "empty", (key, figures[key]["alt"])
    assert "mean over confirmation seeds 1, 2" in text  # per-class from the confirmation runs
    # figure 4 says which weights it shows: those each epoch ended with, as recorded
    assert "class weight w at the end of each epoch" in text
    report = json.loads(run_cli("report", smoke, "--json")["out"])[0]
    for row in report["rows"]:  # the table shows the numbers `report --json` carries
        assert f"{100 * row['val_mean']:.1f}" in text and row["trial_id"] in text
    won = next(r for r in report["rows"] if r["method"] == report["winner"])
    assert f"{won['label']} ★" in text  # DN's label names its base loss when not CE


def test_confirmation_keeps_per_class_test_accuracy_and_search_json_the_counts(smoke):
    meta = json.loads((smoke / "search.json").read_text())
    test_counts = meta["data"]["test"]
    assert len(meta["data"]["train"]) == 10 and meta["data"]["few"]
    rows = table_to_rows(pq.read_table(smoke / "confirm.parquet"))
    for r in rows:
        per_class = r["test_class_acc"]
        overall = sum(a * n for a, n in zip(per_class, test_counts, strict=True))
        assert overall / sum(test_counts) == pytest.approx(r["test_acc"], abs=1e-6)


def test_tensorboard_has_every_epoch_and_difficulty_net_s_per_class_weights(smoke):
    summary = pq.read_table(smoke / "summary.parquet").to_pylist()
    for trial in summary:
        tags = event_tags(smoke / "tensorboard" / trial["method"] / trial["trial_id"])
        epochs = list(range(1, trial["last_epoch"] + 1))
        assert epochs and tags["val/acc"] == epochs and tags["train/loss"] == epochs
        assert tags["test_class_acc/class_009"] == epochs
        if trial["method"] == "difficulty_net":
            for key in ("class_weight", "difficulty", "class_acc_meta"):
                assert all(tags[f"{key}/class_{c:03d}"] == epochs for c in range(10)), key


def _copy(smoke, dst):
    dst.mkdir()
    for name in ("search.json", "summary.parquet", "trials.parquet", "confirm.parquet"):
        shutil.copy(smoke / name, dst / name)
    return dst


def test_an_interrupted_experiment_without_confirmation(smoke, run_cli, tmp_path):
    exp = _copy(smoke, tmp_path / "cut")
    meta = json.loads((exp / "search.json").read_text())
    (exp / "search.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    (exp / "confirm.parquet").unlink()
    text, figures = _report(run_cli, exp, tmp_path)
    _every_figure(figures, METHODS)
    assert "status is <b>interrupted</b>" in text and "not confirmed" in text
    assert "one seed, epoch" in text  # per-class falls back to the search trial itself
    assert all(figures[k]["class"] != "empty" for k in FIXED)


def test_a_running_experiment_before_any_trial_reported(smoke, run_cli, tmp_path):
    exp = tmp_path / "early"
    exp.mkdir()
    meta = json.loads((smoke / "search.json").read_text())
    (exp / "search.json").write_text(json.dumps({**meta, "status": "running"}))
    text, figures = _report(run_cli, exp, tmp_path)
    _every_figure(figures, METHODS)
    assert "status is <b>running</b>" in text
    assert all(f["class"] == "empty" for f in figures.values())  # notes, not blank panels


def test_diverged_and_errored_trials_are_drawn(smoke, run_cli, tmp_path):
    """A diverged trial's last report carries only epoch, val_acc 0.0 and the flag (the
    reliability branch's shape); an errored one stops reporting."""
    exp = _copy(smoke, tmp_path / "faults")
    summary = read_table(str(exp / "summary.parquet"))
    trials = read_table(str(exp / "trials.parquet"))
    dn = [r for r in summary if r["method"] == "difficulty_net"]
    diverged, errored = sorted(dn, key=lambda r: r["best_val_acc"])[:2]  # not the chosen one
    diverged.update(status="diverged", error="training loss became nan at epoch 2")
    errored.update(status="errored", error="RuntimeError: worker died")
    last = max(r["epoch"] for r in trials if r["trial_id"] == diverged["trial_id"])
    trials = [r for r in trials if r["trial_id"] != errored["trial_id"] or r["epoch"] == 1]
    trials.append({"trial_id": diverged["trial_id"], "method": "difficulty_net",
                   "epoch": last + 1, "val_acc": 0.0, "diverged": True,
                   "divergence": "training loss became nan"})
    write_table(str(exp / "summary.parquet"), summary)
    write_table(str(exp / "trials.parquet"), trials)
    text, figures = _report(run_cli, exp, tmp_path)
    _every_figure(figures, METHODS)
    assert "1 diverged" in text and "1 errored" in text
    assert all(figures[k]["class"] != "empty" for k in FIXED)


def test_an_experiment_whose_every_trial_failed(ray_local, run_cli, tmp_path):
    """Every loss is NaN: today those trials are errored; once divergence is its own status
    they are diverged. Either way the report says so in every figure instead of crashing."""
    res = run_cli("search", "--smoke", "--trials", 2, "--methods", ",".join(METHODS),
                  "--no-confirm", "--set", "optim.lr=1e8", "--storage", tmp_path, "--name",
                  "nan", "--quiet")
    assert res["code"] == 1
    text, figures = _report(run_cli, tmp_path / "nan", tmp_path)
    _every_figure(figures, METHODS)
    statuses = {r["status"] for r in pq.read_table(tmp_path / "nan" / "summary.parquet")
                .to_pylist()}
    assert statuses <= {"errored", "diverged"}
    assert any(f"4 {s}" in text for s in statuses)
    for key in ("2-method-comparison", "3-per-class", "4-learned-weights"):
        alt = figures[key]["alt"]
        assert figures[key]["class"] == "empty" and ("no usable result (2 " in alt
                                                     or "no result from any method" in alt), alt


def test_report_files_need_one_experiment_and_bad_paths_are_one_line(smoke, run_cli,
                                                                     one_line_error, tmp_path):
    res = run_cli("report", "--storage", smoke.parent, "--html", tmp_path / "r.html")
    one_line_error(res["code"], res["err"], "--html and --png draw one experiment")
    res = run_cli("report", tmp_path / "nothing", "--html", tmp_path / "r.html")
    one_line_error(res["code"], res["err"], "is not a dnet-tune experiment")
    res = run_cli("report", smoke, "--html", tmp_path)
    one_line_error(res["code"], res["err"], "is a folder")
    assert not (tmp_path / "r.html").exists()
    res = run_cli("search", "--smoke", "--warm-start", -1, "--storage", tmp_path / "s")
    one_line_error(res["code"], res["err"], "--warm-start must be >= 0")
    assert not (tmp_path / "s").exists()
    res = run_cli("report", smoke, "--json", "--png", tmp_path / "p")
    assert res["code"] == 0 and json.loads(res["out"])[0]["dataset"] == "digits_lt"
    assert "PNG files" in res["err"]  # stdout stays one JSON document


@pytest.mark.parametrize(("grace", "rf", "top"), [(1, 2, 4), (3, 2, 15), (1, 3, 10), (2, 2, 2)])
def test_asha_rungs_are_ray_s_own_milestones(grace, rf, top):
    from ray.tune.schedulers import ASHAScheduler

    asha = ASHAScheduler(time_attr="epoch", max_t=top, grace_period=grace, reduction_factor=rf)
    milestones = sorted(m for m, _ in asha._brackets[0]._rungs if m < top)
    assert asha_rungs({"grace_period": grace, "reduction_factor": rf,
                       "max_epochs": top}) == milestones


def test_the_shot_group_panel_states_the_limits_of_the_one_definition(monkeypatch):
    from types import SimpleNamespace

    from matplotlib.figure import Figure

    from dnet_tune import shot_groups
    from dnet_tune.tune.report.figures import _groups

    d = SimpleNamespace(rows=[{"method": "ce", "test_many": 0.9, "test_medium": 0.6,
                               "test_few": 0.2}], classes={"many": [0], "medium": [1, 2],
                                                           "few": [3]})

    def title() -> str:
        ax = Figure().subplots()
        _groups(ax, d, [])
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "many\n(1 class)", "medium\n(2 classes)", "few\n(1 class)"]
        return str(ax.get_title())

    assert title() == "by shot group (>100, 20–100, <20 training images)"
    monkeypatch.setattr(shot_groups, "MANY_ABOVE", 50)
    monkeypatch.setattr(shot_groups, "FEW_BELOW", 5)
    assert title() == "by shot group (>50, 5–50, <5 training images)"


def test_every_method_declares_its_colour_where_it_is_registered():
    from dnet_tune.config import Config
    from dnet_tune.method import DIFFICULTY_NET
    from dnet_tune.method.methods import METHODS
    from dnet_tune.tune.report.compare import DN
    from dnet_tune.tune.report.data import SPARE_COLOURS, method_colour

    colours = {m: method_colour(m) for m in METHODS.names()}
    assert colours == {  # the colours readers of earlier reports learned
        "balanced_softmax": "#ff7f0e", "cdb_ce": "#2ca02c", "ce": "#7f7f7f",
        "class_balanced": "#9467bd", "difficulty_net": "#1f77b4", "focal": "#8c564b"}
    assert not set(colours.values()) & set(SPARE_COLOURS)
    assert method_colour("a_method_since_removed") in SPARE_COLOURS
    assert DN == DIFFICULTY_NET == Config().method.name and DIFFICULTY_NET in METHODS


def test_the_tensorboard_callback_skips_what_the_recorder_drops_and_the_step():
    from dnet_tune.tune.tensorboard_events import SKIP
    from dnet_tune.tune.trainable import RAY_KEYS, epoch_row

    ours = {"epoch": 3, "val_acc": 0.5, "node_id": "n1", "device": "cpu", "class_weight": [1.0]}
    result = {**dict.fromkeys(RAY_KEYS, 0), **ours}
    assert epoch_row(result) == ours and "training_iteration" in RAY_KEYS
    assert {k for k in result if k not in SKIP} == set(ours) - {"epoch"}


def test_report_and_the_page_show_a_trial_s_sampled_values_alike(smoke):
    from dnet_tune.tune.report.chosen_configs import report
    from dnet_tune.tune.report.data import load_report_data

    (text,) = report(str(smoke.parent), str(smoke))
    page = load_report_data(str(smoke)).rows
    assert [r["config"] for r in page] == [r["config"] for r in text["rows"]]
    assert all(r["config"] and "method.name" not in r["config"] for r in page)


def _sampled(row):
    return {k: v for k, v in row.items() if k.startswith("config/") and v is not None}


def _chosen_trial(exp, method):
    return yaml.safe_load((exp / "best" / f"{method}.yaml").read_text())["provenance"]["trial_id"]


def test_warm_start_evaluates_the_best_confirmed_configs_first(smoke, run_cli):
    """--set pins optim.weight_decay, so this space lacks it: dropped, the rest enqueued. The
    warm-started trials end in their studies as any trial does (README, "How a trial ends in
    its study")."""
    res = run_cli("search", "--dataset", "digits_lt", "--methods", ",".join(METHODS), "--smoke",
                  "--trials", 1, "--max-epochs", 2, "--grace-period", 1, "--cpus-per-trial", 2,
                  "--no-confirm",
                  "--warm-start", 1, "--set", "optim.weight_decay=0.0001", "--storage",
                  smoke.parent, "--name", "warm")
    assert res["code"] == 0, res["err"]
    out = " ".join(res["out"].split())  # the console wraps long lines
    assert ("warm start: enqueued difficulty_net 1, ce 1 confirmed config(s) from smoke; "
            "dropped (not in this space): optim.weight_decay") in out
    source = {r["trial_id"]: r for r in read_table(str(smoke / "summary.parquet"))}
    warm = read_table(str(smoke.parent / "warm" / "summary.parquet"))
    for method in METHODS:
        chosen = _chosen_trial(smoke, method)
        first = min((r for r in warm if r["method"] == method), key=lambda r: r["trial_index"])
        expected = {k: v for k, v in _sampled(source[chosen]).items()
                    if k != "config/optim.weight_decay"}
        assert _sampled(first) == expected, method
    told = assert_studies_mirror(smoke.parent / "warm")
    assert told["COMPLETE"] + told["PRUNED"] == len(METHODS)


def test_warm_start_skips_values_outside_the_current_space(smoke, tmp_path):
    from dnet_tune.tune.space import default_space_path
    from dnet_tune.tune.space_file import load_space
    from dnet_tune.tune.warm_start import find

    text = default_space_path("digits_lt").read_text()
    narrowed = tmp_path / "narrow.yaml"  # no config of the smoke search has lr in [0.5, 0.9]
    narrowed.write_text(text.replace("optim.lr: {type: float, low: 0.01, high: 0.2, log: true}",
                                     "optim.lr: {type: float, low: 0.5, high: 0.9, log: true}"))
    assert narrowed.read_text() != text
    warm = find(str(smoke.parent), "digits_lt", METHODS, load_space(narrowed), 1)
    for method in METHODS:
        (point,) = warm.points[method]
        assert "optim.lr" not in point and "optim.weight_decay" in point
    assert any(s.startswith("optim.lr=") for s in warm.skipped) and not warm.dropped
    assert "skipped (outside this space, sampled instead): optim.lr=" in warm.line("d", "r")
    assert find(str(smoke.parent), "cifar10_lt", METHODS, load_space(narrowed), 1).points == {
        m: [] for m in METHODS}  # another dataset's searches are no source


def test_methods_without_sampled_parameters_or_with_one_trial_get_a_note(smoke):
    from dataclasses import replace

    from dnet_tune.tune.report.data import load_report_data
    from dnet_tune.tune.report.figures_optuna import method_figures

    d = load_report_data(str(smoke))
    assert d.space is not None
    pinned, removed = d.space.pin({"optim.lr": 0.05, "optim.weight_decay": 1e-4})
    assert removed == ["optim.lr", "optim.weight_decay"]
    (fig,) = method_figures(replace(d, space=pinned), "ce")  # ce samples only those two
    assert fig.empty and "no sampled parameters" in fig.notes[0]
    one = [r for r in d.summary if r["method"] != "ce"] + d.trials_of("ce")[:1]
    (fig,) = method_figures(replace(d, summary=one), "ce")
    assert fig.empty and "only one trial" in fig.notes[0]
    assert len(method_figures(d, "ce")) == 3  # importance, slice, parallel coordinates
