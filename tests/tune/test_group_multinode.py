"""`search --workers-per-trial 2` on a real multi-node Ray (`ray.cluster_utils.Cluster`): a CPU
head and two workers with 1 CPU and 1 logical GPU each, so a group of 2 one-GPU workers has one
worker on each node (`--placement spread`) and cannot be packed on one node. The GPUs are Ray
resources only: the workers train on CPU with gloo."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest


@pytest.fixture(scope="module")
def two_gpu_nodes(ray_cluster):
    import ray

    ray_cluster([(1, 1), (1, 1)])
    nodes = [n for n in ray.nodes() if n["Alive"]]
    return {n["NodeID"] for n in nodes if n["Resources"].get("GPU")}


def _search(cli, storage, name, *extra):
    return cli("search", "--dataset", "digits_lt", "--method", "ce", "--smoke", "--trials", 1,
               "--max-epochs", 2, "--grace-period", 2, "--workers-per-trial", 2,
               "--gpus-per-trial", 1, "--no-confirm", "--storage", f"file://{storage}",
               "--name", name, "--quiet", *extra)


def test_a_group_spreads_one_worker_per_node_and_pack_is_refused(two_gpu_nodes, cli, tmp_path,
                                                                  one_line_error):
    assert len(two_gpu_nodes) == 2
    code, _, err = _search(cli, tmp_path, "packed")
    one_line_error(code, err, "--workers-per-trial 2", "does not fit on one node",
                   "the largest holds 1", "--placement spread")

    code, _, err = _search(cli, tmp_path, "spread", "--placement", "spread")
    assert code == 0, err
    exp = tmp_path / "spread"
    summary = pq.read_table(exp / "summary.parquet").to_pylist()
    assert [r["status"] for r in summary] == ["finished"], summary
    rows = pq.read_table(exp / "trials.parquet").to_pylist()
    assert len(rows) == 2 and {r["device"] for r in rows} == {"cpu"}
    assert {r["node_id"] for r in rows} <= two_gpu_nodes  # rank 0 on a GPU node, not the head
    meta = json.loads((exp / "search.json").read_text())
    assert meta["resources"] == {"gpus": 2.0, "gpus_per_trial": 1.0, "cpus_per_trial": 1.0,
                                 "slots": 1, "workers_per_trial": 2, "placement": "spread"}
