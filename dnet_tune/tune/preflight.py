"""Checks of the Ray cluster and the storage a search runs on, made before any trial is launched."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

from dnet_tune.errors import UserError
from dnet_tune.tune.storage import is_uri

# Below this much free space a search would fail part-way (checkpoints every epoch, the tables,
# Ray's own files); DNET_TUNE_MIN_FREE_MB changes it (e.g. for a small disk you know is enough).
MIN_FREE_MB = 256.0
PROBE_BYTES = 4096


def check_storage(root: str) -> None:
    """--storage can be written and is not (nearly) full: one line naming it, before Ray starts.

    A local path is probed in its nearest existing folder (a temp file written, synced and
    removed), so a missing storage root is fine and nothing stays behind; a URI gets a small
    object written and deleted.
    """
    if is_uri(root) and not root.startswith("file://"):
        _probe_uri(root)
        return
    folder = _nearest_folder(root)
    if not folder.is_dir():
        raise UserError(f"--storage '{root}': '{folder}' is a file, not a folder")
    try:
        _probe_local(folder)
    except OSError as exc:
        raise UserError(f"--storage '{root}' is not writable ({exc.strerror or exc} in "
                        f"'{folder}'); pass a folder you can write to") from None
    stat = os.statvfs(folder)
    free_mb = stat.f_bavail * stat.f_frsize / 2**20
    need = float(os.environ.get("DNET_TUNE_MIN_FREE_MB", MIN_FREE_MB))
    if free_mb < need:
        raise UserError(f"--storage '{root}' is almost full: {free_mb:.0f} MiB free in "
                        f"'{folder}', a search needs at least {need:.0f} MiB; free some space "
                        f"or pass another --storage")


def _nearest_folder(location: str) -> Path:
    """The local path itself, or its nearest ancestor that exists."""
    folder = Path(location.removeprefix("file://"))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _probe_local(folder: Path) -> None:
    """A temp file written, synced and removed: OSError if the folder takes no writes."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".dnet-tune-probe-") as f:
        f.write(b"\0" * PROBE_BYTES)
        f.flush()
        os.fsync(f.fileno())


def refused_write(location: str) -> str | None:
    """Why `location` (or, locally, its nearest existing folder) now refuses a small write
    (full, read-only), or None if it takes one: after a failure deep inside a library, this
    tells a storage that stopped taking writes from a bug."""
    if is_uri(location) and not location.startswith("file://"):
        try:
            _probe_uri(location)
        except UserError as exc:
            return str(exc)
        return None
    try:
        _probe_local(_nearest_folder(location))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _probe_uri(root: str) -> None:
    import pyarrow.fs as pafs

    probe = f"{root.rstrip('/')}/.dnet-tune-probe-{uuid.uuid4().hex}"
    try:
        fs, path = pafs.FileSystem.from_uri(probe)
        with fs.open_output_stream(path) as f:
            f.write(b"probe")
        fs.delete_file(path)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot write to --storage '{root}': {reason}") from None

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

