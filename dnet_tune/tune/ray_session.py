"""The search's Ray: connect to a cluster or start a local one, and grow an autoscaling cluster.

Everything that talks to Ray before the Tuner exists lives here, so the driver reads as a list of
steps and the checks of user input stay in `preflight`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rich.console import Console

from dnet_tune.errors import UserError
from dnet_tune.tune.plan import SearchRequest, gpus_per_trial, trial_slots

RAY_TEMP_ENV = "DNET_RAY_TEMP_DIR"  # tests point Ray's session files at a pytest tmp dir


def connect(address: str | None) -> bool:
    """Connect to `address` / $RAY_ADDRESS, or start a local Ray; True if we started it."""
    import ray

    from dnet_tune.tune.preflight import check_reachable, version_mismatch

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
    if ray.is_initialized():
        return False
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
        return False
    if os.environ.get(RAY_TEMP_ENV):
        kwargs["_temp_dir"] = os.environ[RAY_TEMP_ENV]
    ray.init(include_dashboard=False, **kwargs)
    return True


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
