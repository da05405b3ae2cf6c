"""A watchdog that removes what is left of the local Ray a search started, however it ended.

`ray.shutdown()` stops a local Ray cleanly when the driver gets to call it. A driver killed with
kill -9 cannot: Ray's GCS and raylet die with it, but `ray::DashboardAgent` and
`ray::RuntimeEnvAgent` were seen to outlive it for good (re-parented to init, and deaf to
SIGTERM). PR_SET_PDEATHSIG cannot help: they are the raylet's children, not ours.

So the driver, before it starts Ray, starts this process (`python -m dnet_tune.tune.faults.reaper`)
and keeps the write end of a pipe to its stdin; then it starts Ray with a random token in the
environment, which every process of that Ray inherits (daemons, agents, workers; agents rename
themselves, but their environment stays). When the pipe closes, which the kernel does when the
driver exits for any reason, kill -9 included, or which the driver does itself right after
`ray.shutdown()`, this process kills every process of this user whose environment holds the
token (SIGTERM, then SIGKILL after a grace period), sweeping again until none is left.

The environment is not always readable to the end: a process that renames itself with Ray's
`setproctitle` (the agents do) may overwrite the memory /proc/<pid>/environ shows, so the token
vanishes from it. While the driver lives, this process therefore also keeps the family: every
marked process and, through parent pids, every descendant, with its start time (so a reused pid
is never taken for one of them). The sweep kills the marked processes and the family.

It runs in its own session, so a Ctrl-C in the terminal (SIGINT to the foreground process
group) does not reach it. What it cannot do: survive a kill -9 of itself, or see processes
of another user or on other machines (a local Ray has none).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time

from dnet_tune.tune.driver import proc_stat

ENV = "DNET_TUNE_RAY_OWNER"
GRACE_S = 2.0
SWEEP_FOR_S = 20.0
WATCH_S = 1.0  # how often the family is brought up to date while the driver lives


def _has_token(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return needle in f.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return False


class Family:
    """The processes of one Ray: the marked ones (ENV=token in their environment) and all their
    descendants, by (pid, start time); never this process."""

    def __init__(self, token: str) -> None:
        self.needle = f"{ENV}={token}".encode()
        self.known: dict[int, int] = {}

    def update(self) -> None:
        """One pass over /proc: every live process's stat; the environment only of those not
        known yet (a member stays one, and a renamed member's environment may be unreadable)."""
        me = os.getpid()
        procs = {int(e): ps for e in os.listdir("/proc")
                 if e.isdigit() and int(e) != me and (ps := proc_stat(e)) is not None}
        self.known = {p: start for p, start in self.known.items()
                      if p in procs and procs[p][1] == start}
        for pid, (_, start) in procs.items():
            if pid not in self.known and _has_token(pid, self.needle):
                self.known[pid] = start
        grew = True
        while grew:  # children of the family, then theirs
            grew = False
            for pid, (parent, start) in procs.items():
                if pid not in self.known and parent in self.known:
                    self.known[pid] = start
                    grew = True

    def alive(self) -> list[int]:
        self.update()
        return sorted(self.known)


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def sweep(token: str, family: Family | None = None) -> int:
    """Kill every process of the family (marked, or a descendant of one); returns how many."""
    family = family or Family(token)
    deadline = time.monotonic() + SWEEP_FOR_S
    killed = 0
    while time.monotonic() < deadline:
        pids = family.alive()
        if not pids:
            # a process may still be starting (a worker the raylet forked last): look again
            time.sleep(0.5)
            if not family.alive():
                return killed
            continue
        killed += len(pids)
        _signal(pids, signal.SIGTERM)
        end = time.monotonic() + GRACE_S
        while time.monotonic() < end and any(p in pids for p in family.alive()):
            time.sleep(0.1)
        _signal(family.alive(), signal.SIGKILL)
        time.sleep(0.2)
    return killed


def start(token: str) -> subprocess.Popen[bytes]:
    """The watchdog for `token`; close its stdin (or exit) to make it sweep."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "dnet_tune.tune.faults.reaper", token],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def main(argv: list[str]) -> int:
    token = argv[0]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    family = Family(token)
    stdin = sys.stdin.buffer.fileno()
    while True:
        ready, _, _ = select.select([stdin], [], [], WATCH_S)
        if not ready:
            family.update()
        elif not os.read(stdin, 65536):  # b"" once the driver's end is closed
            break
    sweep(token, family)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
