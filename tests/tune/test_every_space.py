"""Every method of every shipped space: a real smoke search writes and reads back its results.

The spaces' own parameters (CDB's τ mixing numbers and "dynamic", DN's widths, ...) go through
Ray, Parquet and YAML; the data is digits_lt so that every space runs in seconds on a CPU.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from dnet_tune.config import config_from_dict
from dnet_tune.data.registry import DATASETS
from dnet_tune.fileio import table_to_rows
from dnet_tune.tune.space import default_space_path
from dnet_tune.tune.space_file import load_space


@pytest.mark.parametrize("dataset", DATASETS.names())
def test_every_method_of_the_space_writes_and_reads_back(ray_local, run_cli, tmp_path, dataset):
    path = default_space_path(dataset)
    methods = sorted(load_space(path).methods)
    res = run_cli("search", "--dataset", "digits_lt", "--space", path, "--methods",
                  ",".join(methods), "--trials", 1, "--max-epochs", 1, "--grace-period", 1,
                  "--no-confirm", "--storage", tmp_path, "--name", "all", "--quiet")
    assert res["code"] == 0, res["err"]
    exp = tmp_path / "all"
    rows = table_to_rows(pq.read_table(exp / "trials.parquet"))
    assert sorted({r["method"] for r in rows}) == methods
    summary = table_to_rows(pq.read_table(exp / "summary.parquet"))
    assert all(r["status"] == "finished" for r in summary), [r["error"] for r in summary]
    report = run_cli("report", exp, "--json")
    assert report["code"] == 0
    assert sorted(r["method"] for r in json.loads(report["out"])[0]["rows"]) == methods
    for method in methods:
        best = yaml.safe_load((exp / "best" / f"{method}.yaml").read_text())
        best.pop("provenance")
        assert config_from_dict(best).method.name == method
