"""The local Ray's bookkeeping (`tune/ray_session.py`) without starting Ray: every process started
with its mark is swept when the session shuts down, and nothing else. The searches in
test_search.py and test_interrupt.py start real local Rays through it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dnet_tune.tune.faults import reaper
from dnet_tune.tune.ray_session import LocalRay


@pytest.fixture
def no_ray():
    import ray

    if ray.is_initialized():  # LocalRay.shutdown() would stop another module's Ray
        pytest.skip("a Ray of another test is running in this process")


def test_shutdown_sweeps_what_carries_the_mark_and_ends_the_watchdog(no_ray):
    local = LocalRay()
    mark = local.mark()
    assert mark == {reaper.ENV: local.token} and len(local.token) == 32
    assert reaper.ENV not in os.environ  # the mark goes only where it is given
    sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
    marked = subprocess.Popen(sleep, env={**os.environ, **mark})
    other = subprocess.Popen(sleep)
    try:
        assert local.reaper.poll() is None  # watching while the session lives
        local.shutdown()
        assert local.reaper.returncode == 0  # waited for: the sweep is over
        assert marked.wait(timeout=10) != 0  # killed, not exited
        assert other.poll() is None
    finally:
        for proc in (marked, other, local.reaper):
            proc.kill()
            proc.wait()

