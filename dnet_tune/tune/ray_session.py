"""The search's Ray: connect to a cluster or start a local one, and grow an autoscaling cluster.

Everything that talks to Ray before the Tuner exists lives here, so the driver reads as a list of
steps and the checks of user input stay in `preflight`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from typing import Any

from rich.console import Console

from dnet_tune.errors import UserError
from dnet_tune.tune import ray_internals
from dnet_tune.tune.faults import reaper
from dnet_tune.tune.plan import SearchRequest, gpus_per_trial, trial_slots
from dnet_tune.tune.preflight import check_reachable, version_mismatch

RAY_TEMP_ENV = "DNET_RAY_TEMP_DIR"  # tests point Ray's session files at a pytest tmp dir


class LocalRay:
    """The local Ray this command started, and the watchdog that removes its leftovers."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.reaper = reaper.start(self.token)

    def mark(self) -> dict[str, str]:
        """Environment entries every process of this Ray must inherit (see `reaper`)."""
        return {reaper.ENV: self.token}

    def shutdown(self) -> None:
        """ray.shutdown(), then the watchdog sweeps what outlived it (waited for, briefly)."""
        import ray

        try:
            ray.shutdown()
        finally:
            if self.reaper.stdin is not None:
                self.reaper.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.reaper.wait(timeout=30)


def connect(address: str | None) -> LocalRay | None:
    """Connect to `address` / $RAY_ADDRESS, or start a local Ray (returned: the caller shuts
    it down); None when the Ray was there already."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
    if ray.is_initialized():
        return None
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": True,
                              "logging_level": "ERROR"}
    if address:
        try:
            ray.init(address=address, **kwargs)
        except RuntimeError as exc:
            mismatch = version_mismatch(str(exc), address)
            if mismatch is None:
                raise
            raise mismatch from None
        return None
    if os.environ.get(RAY_TEMP_ENV):
        kwargs.update(ray_internals.temp_dir_option(os.environ[RAY_TEMP_ENV]))
    local = LocalRay()
    # Ray's daemons are started from this process's environment and workers from theirs:
    # the mark reaches all of them, and leaves ours right after
    os.environ.update(local.mark())
    try:
        ray.init(include_dashboard=False, **kwargs)
    except OSError as exc:  # e.g. a temp dir so deep that Ray's socket paths do not fit
        local.shutdown()
        raise UserError(f"cannot start a local Ray: {exc}; set {RAY_TEMP_ENV} (or TMPDIR) to "
                        f"a short, writable folder") from None
    except BaseException:
        local.shutdown()
        raise
    finally:
        for key in local.mark():
            os.environ.pop(key, None)
    return local


def wait_for_gpus(req: SearchRequest, console: Console, poll_s: float = 1.0) -> None:
    """Ask the autoscaler for the trial slots' GPUs and wait until the cluster has `--gpus`.

    Clusters that scale GPU workers from zero have no GPUs when the search starts; without this
    the resource check would refuse `--gpus 8` (by design: no trials stuck in PENDING). The
    request is withdrawn by `release_gpus` when the search ends, so idle nodes can go.
    """
    import ray
    from ray.autoscaler.sdk import request_resources

    want = float(req.gpus or 0)
    have = float(ray.cluster_resources().get("GPU", 0.0))
    if req.wait_for_gpus <= 0 or have >= want:
        return
    per_trial = gpus_per_trial(req)
    slots = max(1, trial_slots(want, per_trial))
    request_resources(bundles=[{"GPU": per_trial, "CPU": req.cpus_per_trial}] * slots)
    console.print(f"waiting up to {req.wait_for_gpus:g} s for {want:g} GPUs (cluster has "
                  f"{have:g}); asked the autoscaler for {slots} trial slots")
    deadline = time.monotonic() + req.wait_for_gpus
    while have < want and time.monotonic() < deadline:
        time.sleep(poll_s)
        have = float(ray.cluster_resources().get("GPU", 0.0))
    if have < want:  # the driver withdraws the request on the way out
        raise UserError(f"only {have:g} of --gpus {want:g} GPUs appeared within "
                        f"{req.wait_for_gpus:g} s; check the worker group's max size and quota, "
                        f"or wait longer with --wait-for-gpus")


def release_gpus() -> None:
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[])
