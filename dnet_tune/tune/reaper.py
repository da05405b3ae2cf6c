"""A watchdog that removes what is left of the local Ray a search started, however it ended.

`ray.shutdown()` stops a local Ray cleanly when the driver gets to call it. A driver killed with
kill -9 cannot: Ray's GCS and raylet die with it, but `ray::DashboardAgent` and
`ray::RuntimeEnvAgent` were seen to outlive it for good (re-parented to init, and deaf to
SIGTERM). PR_SET_PDEATHSIG cannot help: they are the raylet's children, not ours.

So the driver, before it starts Ray, starts this process (`python -m dnet_tune.tune.reaper`)
and keeps the write end of a pipe to its stdin; then it starts Ray with a random token in the
environment, which every process of that Ray inherits (daemons, agents, workers; agents rename
themselves, but their environment stays). When the pipe closes, which the kernel does when the
driver exits for any reason, kill -9 included, or which the driver does itself right after
`ray.shutdown()`, this process kills every process of this user whose environment holds the
token (SIGTERM, then SIGKILL after a grace period), sweeping again until none is left.

It runs in its own session, so a Ctrl-C in the terminal (SIGINT to the foreground process
group) does not reach it. What it cannot do: survive a kill -9 of itself, or see processes
of another user or on other machines (a local Ray has none).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

ENV = "DNET_TUNE_RAY_OWNER"
GRACE_S = 2.0
SWEEP_FOR_S = 20.0


def marked(token: str) -> list[int]:
    """Live processes (not zombies) whose environment holds ENV=token, except this one."""
    needle = f"{ENV}={token}".encode()
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:  # gone, or not ours to read
            continue
        found.append(int(entry))
    return found


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def sweep(token: str) -> int:
    """Kill every marked process; returns how many there were."""
    deadline = time.monotonic() + SWEEP_FOR_S
    killed = 0
    while time.monotonic() < deadline:
        pids = marked(token)
        if not pids:
            # a process may still be starting (a worker the raylet forked last): look again
            time.sleep(0.5)
            if not marked(token):
                return killed
            continue
        killed += len(pids)
        _signal(pids, signal.SIGTERM)
        end = time.monotonic() + GRACE_S
        while time.monotonic() < end and any(p in pids for p in marked(token)):
            time.sleep(0.1)
        _signal(marked(token), signal.SIGKILL)
        time.sleep(0.2)
    return killed


def start(token: str) -> subprocess.Popen[bytes]:
    """The watchdog for `token`; close its stdin (or exit) to make it sweep."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "dnet_tune.tune.reaper", token],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def main(argv: list[str]) -> int:
    token = argv[0]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(65536):  # returns b"" once the driver's end is closed
        pass
    sweep(token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
