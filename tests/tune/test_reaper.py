"""The watchdog of a local Ray (`tune/faults/reaper.py`) with real processes: it kills the marked
processes and their descendants, even one that renamed itself the way Ray's agents do (which
overwrites what /proc shows of its environment) and was then orphaned, and nothing else. No
fixed waits: each step waits for what it needs to see in /proc, with a deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from dnet_tune.tune.driver import proc_stat
from dnet_tune.tune.faults import reaper

# A marked parent that starts a child; the child renames itself with Ray's own setproctitle,
# as ray::DashboardAgent does, then both wait. The child's pid goes to stdout. How much of the
# environment a title overwrites depends on the lengths of the title, the command line and the
# environment (in the full suite only its start was overwritten), so the token goes first.
FAMILY = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time, ray._raylet as r; "
    "r.setproctitle('ray:' + ':Renamed' + ' ' * 100000); time.sleep(300)"])
print(child.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def _wait(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def _renamed_family(token: str) -> tuple[subprocess.Popen[bytes], int]:
    """The marked parent and its renamed child's pid, once the rename has hidden the token."""
    marked = subprocess.Popen([sys.executable, "-c", FAMILY], stdout=subprocess.PIPE,
                              env={reaper.ENV: token, **os.environ})
    child = None
    try:
        assert marked.stdout is not None
        child = int(marked.stdout.readline())
        # the precondition that makes these tests matter: the rename hid the token from /proc
        assert _wait(lambda: b"ray::Renamed" in Path(f"/proc/{child}/cmdline").read_bytes(), 30)
        assert token.encode() not in _environ(child)
        assert token.encode() in _environ(marked.pid)
    except BaseException:
        for pid in (marked.pid, child):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        marked.wait()
        raise
    return marked, child


def _found(token: str, *pids: int) -> bool:
    """Whether one pass over /proc, as the watchdog makes it, finds all of `pids`."""
    return set(pids) <= set(reaper.Family(token).alive())


def test_the_sweep_kills_a_renamed_descendant_and_spares_the_rest():
    token = uuid.uuid4().hex
    watchdog = reaper.start(token)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    marked, child = _renamed_family(token)
    try:
        # ready: the family is whole as the watchdog's passes see it (the renamed child only
        # through its parent), and the watchdog is up
        assert _wait(lambda: _found(token, marked.pid, child), 30)
        assert watchdog.poll() is None
        assert watchdog.stdin is not None
        watchdog.stdin.close()  # what the kernel does when the driver dies
        watchdog.wait(timeout=60)
        assert marked.wait(timeout=10) != 0  # killed, not exited
        assert _wait(lambda: not _alive(child), 10), "the renamed child outlived the sweep"
        assert _alive(bystander.pid)
    finally:
        for proc in (marked, bystander, watchdog):
            proc.kill()
            proc.wait()


def test_a_member_seen_while_the_driver_lived_is_swept_after_it_is_orphaned():
    """Ray's agents outlive the raylet that started them: re-parented, their token hidden by a
    rename, nothing in /proc ties them to the search any more, only the family kept while the
    driver lived (what the watchdog's passes do every WATCH_S, done here in this process)."""
    token = uuid.uuid4().hex
    marked, child = _renamed_family(token)
    try:
        family = reaper.Family(token)
        assert _wait(lambda: {marked.pid, child} <= set(family.alive()), 30)
        marked.kill()  # the raylet dies with the driver
        marked.wait()
        assert _wait(lambda: (proc_stat(child) or (marked.pid,))[0] != marked.pid, 10)
        assert _alive(child) and not _found(token, child)  # a fresh look cannot find it
        assert family.alive() == [child]  # the family still knows it
        assert reaper.sweep(token, family) == 1
        assert _wait(lambda: not _alive(child), 10), "the orphan outlived the sweep"
    finally:
        marked.kill()
        marked.wait()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
