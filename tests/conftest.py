"""Shared fixtures: a real local Ray (2 CPUs) with its files under a pytest tmp dir."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    import ray

    temp = tmp_path_factory.mktemp("ray")
    os.environ["DNET_RAY_TEMP_DIR"] = str(temp)
    ray.init(num_cpus=2, _temp_dir=str(temp), include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def chdir_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path
