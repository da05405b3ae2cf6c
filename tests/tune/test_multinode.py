"""`search` on a real multi-node Ray (`ray.cluster_utils.Cluster`): a CPU head that runs no
trials and two workers with 2 logical GPUs each. The GPUs are Ray resources only, so trials
must fall back to CPU while still being placed and packed by their GPU requests."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest


@pytest.fixture(scope="module")
def gpu_cluster(ray_cluster):
    import ray

    ray_cluster([(4, 2), (4, 2)])
    nodes = [n for n in ray.nodes() if n["Alive"]]
    head = [n["NodeID"] for n in nodes if not n["Resources"].get("GPU")]
    workers = [n["NodeID"] for n in nodes if n["Resources"].get("GPU")]
    assert len(head) == 1 and len(workers) == 2
    return {"head": head[0], "workers": set(workers)}


def search(cli, storage, name, trials, *extra):
    return cli("search", "--dataset", "digits_lt", "--method", "difficulty_net", "--smoke",
               "--trials", trials, "--storage", f"file://{storage}", "--name", name, "--quiet",
               *extra)


def placement(exp):
    rows = pq.read_table(exp / "trials.parquet").to_pylist()
    meta = json.loads((exp / "search.json").read_text())
    summary = pq.read_table(exp / "summary.parquet").to_pylist()
    return rows, meta, summary


def test_one_gpu_per_trial_spreads_over_workers_not_the_head(gpu_cluster, cli, tmp_path):
    # 4 one-GPU trials at once: each worker node holds 2, so they must use both
    code, _, err = search(cli, tmp_path, "g1", 4, "--gpus", 4, "--gpus-per-trial", 1,
                          "--confirm-top", 1, "--confirm-seeds", 2)
    assert code == 0, err
    rows, meta, summary = placement(tmp_path / "g1")
    assert not [r for r in summary if r["status"] == "errored"], summary
    search_rows = [r for r in rows if r["method"] == "difficulty_net"]
    nodes = {r["node_id"] for r in search_rows}
    assert gpu_cluster["head"] not in {r["node_id"] for r in rows}
    assert nodes == gpu_cluster["workers"]
    confirm = pq.read_table(tmp_path / "g1" / "confirm.parquet").to_pylist()
    assert len(confirm) == 2  # the confirmation runs as GPU tasks: on workers too
    assert {r["node_id"] for r in confirm} <= gpu_cluster["workers"]
    assert {r["device"] for r in rows} == {"cpu"}  # logical GPUs only: CPU fallback
    assert meta["resources"]["slots"] == 4 and meta["resources"]["gpus_per_trial"] == 1.0
    assert 1 <= meta["peak_running_trials"] <= 4
    assert len({r["trial_id"] for r in search_rows}) == 4


def test_half_a_gpu_per_trial_packs_up_to_eight(gpu_cluster, cli, tmp_path):
    # 6 trials for 8 slots: more than 4 at once shows the half-GPU packing
    code, _, err = search(cli, tmp_path, "g05", 6, "--gpus-per-trial", 0.5, "--no-confirm")
    assert code == 0, err
    rows, meta, _ = placement(tmp_path / "g05")
    assert meta["resources"]["gpus"] == 4 and meta["resources"]["slots"] == 8
    assert 4 < meta["peak_running_trials"] <= 8
    assert {r["node_id"] for r in rows} == gpu_cluster["workers"]


def test_more_gpus_than_the_cluster_has_fails_before_launch(gpu_cluster, cli, tmp_path):
    code, _, err = search(cli, tmp_path, "g6", 8, "--gpus", 6)
    assert code == 2
    assert err.strip().splitlines() == [
        "dnet-tune: error: --gpus 6 asks for more GPUs than the cluster has (4); "
        "pass --gpus 4 or fewer"]
    assert not tmp_path.joinpath("g6").exists()


def test_local_storage_is_refused_on_a_multi_node_cluster(gpu_cluster, cli, tmp_path):
    storage = tmp_path / "local"
    code, _, err = cli("search", "--smoke", "--storage", storage, "--name", "x")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "local path but the cluster has 3 nodes" in lines[0]
    assert "s3://" in lines[0]
    assert not storage.exists()
