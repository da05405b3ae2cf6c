"""Checks of the Ray cluster a search runs on, made before any trial is launched."""

from __future__ import annotations

import re
import socket
from urllib.parse import urlparse

from dnet_tune.errors import UserError
from dnet_tune.tune.storage import is_uri

REACH_TIMEOUT_S = 10.0


def check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's long retry loop, when the head cannot be reached."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port or (10001 if parsed.scheme == "ray" else 6379)
    if not host:
        raise UserError(f"--address '{address}' is not host:port or ray://host:port")
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at '{address}' ({exc.strerror or exc}); "
                        f"check --address / RAY_ADDRESS and that the head is up") from None


def check_cluster(storage: str) -> None:
    """Multi-node clusters need shared storage: trial results are written on every node."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) > 1 and not is_uri(storage):
        raise UserError(f"--storage '{storage}' is a local path but the cluster has "
                        f"{len(alive)} nodes; pass shared storage such as s3://bucket/dnet, "
                        f"gs://bucket/dnet or a path on a shared filesystem as file:///mnt/...")


_VERSIONS = re.compile(r"Ray: (\S+)\s+Python: (\S+)")


def version_mismatch(error: str, address: str) -> UserError | None:
    """Ray's multi-line "Version mismatch" error as one line that says what differs and what to do.

    Ray refuses a driver whose Ray or Python version differs from the cluster's; the default
    message is a block of text inside a traceback. Returns None for any other error.
    """
    if "Version mismatch" not in error:
        return None
    found = _VERSIONS.findall(error)
    if len(found) < 2:
        return UserError(f"the Ray cluster at '{address}' runs other Ray/Python versions than "
                         f"this driver; install the cluster's or use ray job submit")
    (c_ray, c_py), (d_ray, d_py) = found[0], found[1]
    differ = []
    if c_ray != d_ray:
        differ.append(f"Ray {d_ray} here vs {c_ray} on the cluster")
    if c_py != d_py:
        differ.append(f"Python {d_py} here vs {c_py} on the cluster")
    fix = (f"pip install 'ray[tune]=={c_ray}' and use Python {c_py}, or run the search on the "
           f"cluster with ray job submit")
    return UserError(f"version mismatch with the Ray cluster at '{address}': "
                     f"{'; '.join(differ) or 'see ray status'}; {fix}")

