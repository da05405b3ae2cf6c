"""The report page (`tune/report/html.py`) on an experiment written by hand (`experiments.py`,
no Ray): the summary table, the banners of an unfinished or unconfirmed search, where each
figure goes, and a figure that fails to draw becoming a note instead of a lost report.
test_report.py builds whole pages from real searches."""

from __future__ import annotations

import base64
import dataclasses
from html.parser import HTMLParser

import pytest
from experiments import write_experiment

from dnet_tune.errors import UserError
from dnet_tune.tune.report import figures, figures_classes, html
from dnet_tune.tune.report.data import load_report_data


class _Page(HTMLParser):
    """The text of each table row, of each banner and of each heading; every figure's attrs."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.banners: list[str] = []
        self.headings: list[str] = []
        self.figures: list[dict[str, str | None]] = []
        self.images: list[dict[str, str | None]] = []
        self._into: list[str] | None = None
        self._cell: list[str] | None = None
        self._text: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("h1", "h2", "h3") or (tag in ("div", "p") and a.get("class") == "banner"):
            self._text = []
            self._into = self.headings if tag.startswith("h") else self.banners
        elif tag == "figure":
            self.figures.append(a)
        elif tag == "img":
            self.images.append(a)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag in ("h1", "h2", "h3", "div", "p") and self._text is not None:
            assert self._into is not None
            self._into.append("".join(self._text).strip())
            self._text = None

    def handle_data(self, data):
        for part in (self._cell, self._text):
            if part is not None:
                part.append(data)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_report_data(write_experiment(tmp_path_factory.mktemp("html") / "exp1"))


def test_the_summary_has_one_row_per_method_with_its_chosen_trial(data):
    page = _Page(html.summary_table(data))
    assert page.rows[0] == ["method", "val", "test ± 95% CI", "many", "medium", "few",
                            "trials", "trial statuses", "chosen trial and key parameters"]
    dn, ce = page.rows[1:]
    assert dn[0] == "difficulty_net ★" and ce[0] == "ce"  # the winner by val
    assert dn[1:3] == ["85.0", "80.0 ± 12.7"]  # test .79, .81: t(.975, 1) * .01 = 12.7 points
    assert dn[6:] == ["2", "2 finished", "dn_2 dn=[64,256] lr=0.02"]
    assert ce[2] == "75.0 ± 12.7" and ce[8] == "ce_2 lr=0.04"


def test_the_difference_line_follows_the_table(data):
    text = html.summary_table(data)
    assert "<p>difficulty_net − ce (best baseline by val) on test: +5.00 ± 0.00 points (95% " \
           "CI, paired over seeds 5, 6): significant</p>" in text


def test_without_any_result_the_summary_says_why_with_the_first_error(data):
    failed = [{**r, "status": "errored", "error": "CUDA <oom> & more"} for r in data.summary]
    text = html.summary_table(dataclasses.replace(data, rows=[], summary=failed))
    assert text == ("<p class='banner'>No method has a result: no trial reported a usable "
                    "epoch (4 errored); first error: <code>CUDA &lt;oom&gt; &amp; more</code>."
                    "</p>")


def _figure(key, section, notes=(), empty=False):
    png = b"\x89PNG not really"
    return figures.Figure(key, section, f"title of {key}", f"caption of {key}", png, 321,
                          list(notes), empty)


FIGS = [_figure("1-learning-curves", "Learning curves", ["a missing piece"]),
        _figure("5-importance-ce", "Parameters"),
        _figure("5-importance-difficulty_net", "Parameters", ["why not"], empty=True),
        _figure("2-method-comparison", "Method comparison")]


def test_the_page_puts_each_figure_in_its_section_and_each_parameter_figure_by_method(data):
    page = _Page(html.render_html(data, FIGS))
    assert page.headings == ["exp1: digits_lt", "Summary", "Learning curves",
                             "Method comparison", "Parameters", "difficulty_net", "ce"]
    assert [f["id"] for f in page.figures] == [
        "1-learning-curves", "2-method-comparison", "5-importance-difficulty_net",
        "5-importance-ce"]
    assert all(f["style"] == "width:321px" for f in page.figures)
    first = page.images[0]
    assert first["width"] == "321" and first["alt"] == "title of 1-learning-curves"
    assert first["src"] == "data:image/png;base64," + base64.b64encode(FIGS[0].png).decode()
    assert page.images[2]["alt"] == "title of 5-importance-difficulty_net: why not"
    assert page.banners == []  # finished and confirmed


def test_an_unfinished_unconfirmed_search_gets_banners(tmp_path):
    d = load_report_data(write_experiment(tmp_path / "exp", status="interrupted",
                                          confirm=False))
    without_ce = dataclasses.replace(d, rows=[r for r in d.rows if r["method"] != "ce"])
    text = html.render_html(without_ce, FIGS)
    page = _Page(text)
    assert page.banners[0] == ("This experiment's status is interrupted: the numbers cover the "
                               "trials that had reported when its files were written.")
    assert page.banners[1].startswith("not confirmed (no confirm.parquet")
    assert "ce (no result)" in page.headings
    assert "not confirmed: one seed per method, no intervals" in text


def test_a_figure_that_fails_becomes_a_note_and_the_rest_are_kept(data, monkeypatch, capsys):
    def broken(d):
        raise RuntimeError("per-class went wrong")

    monkeypatch.setattr(figures_classes, "per_class", broken)
    # nothing to draw anywhere (quick): each figure a note, the broken one naming its error
    bare = dataclasses.replace(data, rows=[], trials=[], summary=[], methods=[], classes=None,
                               diff=None)
    figs = html.build_figures(bare)
    assert [f.key for f in figs] == ["1-learning-curves", "2-method-comparison", "3-per-class",
                                     "4-learned-weights"]
    assert all(f.empty for f in figs)
    assert figs[2].notes == ["this figure could not be drawn: RuntimeError: per-class went "
                             "wrong"]
    err = capsys.readouterr().err
    assert err.startswith("dnet-tune: warning: 3-per-class: this figure could not be drawn: "
                          "RuntimeError: per-class went wrong\nTraceback")


def test_pngs_are_written_one_file_per_figure(tmp_path):
    written = html.write_pngs(FIGS[:2], str(tmp_path / "new" / "pngs"))
    assert [p.name for p in written] == ["1-learning-curves.png", "5-importance-ce.png"]
    assert [p.read_bytes() for p in written] == [FIGS[0].png, FIGS[1].png]


def test_report_files_in_the_wrong_kind_of_place_are_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError) as folder:
        html.make_report(str(tmp_path / "nowhere"), str(tmp_path), None)
    assert str(folder.value) == (f"--html '{tmp_path}' is a folder; give a file name, e.g. "
                                 f"report.html")
    with pytest.raises(UserError) as file:
        html.make_report(str(tmp_path / "nowhere"), None, str(tmp_path / "a_file"))
    assert str(file.value) == f"--png '{tmp_path / 'a_file'}' is a file; give a folder"
