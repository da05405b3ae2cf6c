"""The watchdog of a local Ray (`tune/faults/reaper.py`) with real processes: it kills the marked
processes and their descendants, even one that renamed itself the way Ray's agents do (which
overwrites what /proc shows of its environment), and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

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


def test_the_sweep_kills_a_renamed_descendant_and_spares_the_rest():
    token = uuid.uuid4().hex
    watchdog = reaper.start(token)
    marked = subprocess.Popen([sys.executable, "-c", FAMILY], stdout=subprocess.PIPE,
                              env={reaper.ENV: token, **os.environ})
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        assert marked.stdout is not None
        child = int(marked.stdout.readline())
        # the precondition that makes this test matter: the rename hid the token from /proc
        assert _wait(lambda: b"ray::Renamed" in Path(f"/proc/{child}/cmdline").read_bytes(), 30)
        assert token.encode() not in _environ(child)
        assert token.encode() in _environ(marked.pid)
        time.sleep(3 * reaper.WATCH_S)  # the watchdog has seen the family
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
