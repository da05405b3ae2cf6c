"""Shared fixtures: a real local Ray (2 CPUs) with its files under a pytest tmp dir, the CLI."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import pytest

from dnet_tune.cli import main

MB = 1024**2

# Ray Train's controller collects its workers' reports at this interval (2 s by default) and a
# worker's report waits for that, so a group trial's 0.2 s test epoch took 2 s. Set before any
# Ray starts here, so the test Rays and the subprocess drivers' Rays inherit it; it changes when
# a report is collected, not what is reported.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """One real Ray per test module, so a module may start its own multi-node cluster instead."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    temp = tmp_path_factory.mktemp("ray")
    with _env("DNET_RAY_TEMP_DIR", str(temp)):
        ray.init(num_cpus=2, _temp_dir=str(temp), include_dashboard=False, log_to_driver=False)
        yield ray
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Start a real multi-node `ray.cluster_utils.Cluster` for this module and connect to it.

    Call it with the worker nodes' `(num_cpus, num_gpus)`; the head has 1 CPU and no GPU, so it
    runs no GPU trial. Returns the Cluster (its `add_node` grows it later).
    """
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    temp = tmp_path_factory.mktemp("raycluster")
    (temp / "ray").mkdir()
    started: list[Cluster] = []
    # the Cluster helper writes its address file under RAY_TMPDIR, not under temp_dir
    with _env("RAY_TMPDIR", str(temp)):

        def start(workers: list[tuple[int, int]]) -> Cluster:
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 1, "num_gpus": 0, "temp_dir": str(temp),
                "include_dashboard": False, "object_store_memory": 150 * MB})
            started.append(cluster)
            for cpus, gpus in workers:
                cluster.add_node(num_cpus=cpus, num_gpus=gpus, object_store_memory=150 * MB)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, log_to_driver=False)
            return cluster

        yield start
        ray.shutdown()
        for cluster in started:
            cluster.shutdown()


@pytest.fixture
def chdir_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cli(run_cli) -> Callable[..., tuple[int, str, str]]:
    """Run `dnet-tune ARGV...` in-process; returns (exit code, stdout, stderr)."""

    def run(*argv: object) -> tuple[int, str, str]:
        res = run_cli(*argv)
        return res["code"], res["out"], res["err"]

    return run


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dnet-tune: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., dict[str, object]]:
    """The CLI in-process with its output captured; usable from module-scoped fixtures."""
    import contextlib
    import io

    def run(*argv: object) -> dict[str, object]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
        return {"code": code, "out": out.getvalue(), "err": err.getvalue()}

    return run


@pytest.fixture
def one_line_error() -> Callable[..., None]:
    return assert_one_line_error


def folder_state(folder) -> dict[str, tuple[str, int]]:
    """Every file's hash and mtime and every folder's mtime under `folder` (a temp file created
    and removed shows in its folder's): equal before and after means nothing was written."""
    import hashlib
    from pathlib import Path

    folder = Path(folder)
    out = {}
    for p in sorted([folder, *folder.rglob("*")]):
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        out[str(p.relative_to(folder))] = (digest, p.stat().st_mtime_ns)
    return out


@pytest.fixture
def state_of() -> Callable[..., dict[str, tuple[str, int]]]:
    return folder_state


@pytest.fixture
def no_tf32():
    """CUDA tests that compare two implementations: TF32 convolutions and matmuls would make
    them agree only to ~1e-3. (torch is imported here, not at the top: most tests never need it.)"""
    import torch

    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
