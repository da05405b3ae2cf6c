"""`--wait-for-gpus`: a cluster that brings GPU workers up after the search starts (as an
autoscaler does from zero) is waited for; one that never does fails in one line."""

from __future__ import annotations

import contextlib
import io
import threading
import time

import pyarrow.parquet as pq
import pytest

from dnet_tune.cli import main

MB_150 = 150 * 1024**2


@pytest.fixture(scope="module")
def growing_cluster(ray_cluster):
    return ray_cluster([(2, 2)])


def test_gpus_that_never_appear_fail_after_the_wait(growing_cluster, run_cli, tmp_path):
    res = run_cli("search", "--smoke", "--gpus", 6, "--wait-for-gpus", 2,
                  "--storage", f"file://{tmp_path}", "--name", "never", "--quiet")
    assert res["code"] == 2
    assert res["err"].strip().splitlines() == [
        "dnet-tune: error: only 2 of --gpus 6 GPUs appeared within 2 s; check the worker "
        "group's max size and quota, or wait longer with --wait-for-gpus"]
    assert not (tmp_path / "never").exists()


def test_search_waits_for_a_worker_that_joins_later(growing_cluster, tmp_path):
    """The search runs in a thread so that this (main) thread can start the late node: Ray
    starts node processes only from the main thread. The node joins once the search has said
    that it waits (its output is read while it runs), not after a guessed delay."""
    import ray

    out, err = io.StringIO(), io.StringIO()
    result: dict = {}

    def search() -> None:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result["code"] = main(["search", "--smoke", "--trials", "4", "--gpus", "4",
                                   "--wait-for-gpus", "120", "--method", "difficulty_net",
                                   "--no-confirm", "--storage", f"file://{tmp_path}",
                                   "--name", "grow"])

    waiting = "waiting up to 120 s for 4 GPUs (cluster has 2)"
    searcher = threading.Thread(target=search)
    searcher.start()
    deadline = time.monotonic() + 300
    while waiting not in out.getvalue() and searcher.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert waiting in out.getvalue(), (out.getvalue(), err.getvalue())
    growing_cluster.add_node(num_cpus=2, num_gpus=2, object_store_memory=MB_150)
    searcher.join(timeout=600)
    assert not searcher.is_alive()
    assert result["code"] == 0, err.getvalue()
    assert ray.cluster_resources()["GPU"] == 4
    rows = pq.read_table(tmp_path / "grow" / "trials.parquet").to_pylist()
    assert len({r["trial_id"] for r in rows}) == 4
