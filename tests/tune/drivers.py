"""`dnet-tune search` as a real subprocess driver (it starts and stops its own local Ray), and
ways to watch it from outside: its live tables, and the processes of its Ray.

Modules that use these must not hold the `ray_local` fixture: the driver's own Ray would be a
second one on the same 2 CPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dnet_tune.fileio import table_to_rows

ROOT = Path(__file__).resolve().parents[2]
MARK = "DNET_TEST_DRIVER_MARK"


def driver_env(tmp_path_factory) -> dict[str, str]:
    """The driver's environment: its Ray in a pytest tmp dir (a short one: Ray's socket paths
    must fit in 107 bytes), and a mark that every process it starts inherits (Ray's daemons and
    workers included), so they can be counted later."""
    ray_dir = tmp_path_factory.mktemp("ray")
    # COLUMNS: the console is no terminal here, so rich would wrap at 80 columns and split the
    # long tmp paths the tests look for
    env = dict(os.environ, DNET_RAY_TEMP_DIR=str(ray_dir), PYTHONPATH=str(ROOT),
               PYTHONUNBUFFERED="1", COLUMNS="1000")
    env[MARK] = uuid.uuid4().hex
    return env


def cli(*argv: object) -> list[str]:
    return [sys.executable, "-m", "dnet_tune.cli", *map(str, argv)]


def start(env: dict[str, str], *argv: object, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - the child owns it until it exits
    return subprocess.Popen(cli(*argv), env=env, stdout=out, stderr=subprocess.STDOUT,
                            cwd=ROOT)


def live_epochs(ray_dir: Path | str, name: str = "*") -> dict[str, int]:
    """How many epochs each trial of experiment `name` has reported to the driver whose Ray
    lives in `ray_dir`, by trial id: the driver's own result.json of each trial, written per
    result in its Ray's session folder (`driver_artifacts`); the copy in the storage follows
    only with each of Tune's experiment snapshots (every 10 s). A group's result reaches the
    driver once Ray Train has registered its checkpoint."""
    counts: dict[str, int] = {}
    pattern = f"session_*/artifacts/*/{name}/driver_artifacts/trial_*/result.json"
    for f in Path(ray_dir).glob(pattern):
        try:
            n = sum(line.endswith("}") for line in f.read_text().splitlines())
        except OSError:
            continue
        tid = f.parent.name.removeprefix("trial_")
        counts[tid] = max(counts.get(tid, 0), n)
    return counts


def read_live(path: Path) -> pa.Table:
    """A table the running driver may be replacing right now, read through one open file.

    The driver writes atomically (a new file renamed over the old), but `pq.read_table(path)`
    takes the file's size and its bytes in separate opens, so it can get the size of one
    version and the pages of the next ("Page was smaller than expected"). An open file keeps
    the version it opened.
    """
    with pa.OSFile(str(path)) as f:
        return pq.read_table(f)


def ended_trials(exp: Path) -> dict[str, dict]:
    """Trials the live summary calls ended (any status but unfinished), by id."""
    path = exp / "summary.parquet"
    if not path.is_file():
        return {}
    return {r["trial_id"]: r for r in read_live(path).to_pylist()
            if r["status"] != "unfinished"}


def trial_rows(exp: Path) -> list[dict]:
    return table_to_rows(read_live(exp / "trials.parquet"))


def wait_until(check, timeout: float, proc: subprocess.Popen[bytes] | None = None,
               poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver exited ({proc.returncode}) before that happened")
        time.sleep(poll)
    raise AssertionError(f"not within {timeout} s")


def wait_until_reaped(mark: str, timeout: float = 60.0) -> None:
    """Every process of the marked driver's Ray gone (the watchdog sweeps for up to ~22 s);
    otherwise the survivors of the last look, with their states, are the failure message."""
    seen: list[tuple[int, str, str]] = []

    def gone() -> bool:
        seen[:] = [(pid, name, _state(pid)) for pid, name in marked_processes(mark)]
        return not seen

    try:
        wait_until(gone, timeout=timeout, poll=0.5)
    except AssertionError:
        raise AssertionError(f"still running {timeout:.0f} s after the driver ended: "
                             f"{seen}") from None


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def marked_processes(mark: str) -> list[tuple[int, str]]:
    """(pid, name) of every live process whose environment holds the mark.

    The environment, not the command line: Ray's agents rename themselves
    (`ray::DashboardAgent`), so their command line no longer names the session directory.
    """
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                name = f.read().split(b"\0")[0].decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state != "Z":
            found.append((int(entry), name))
    return found
