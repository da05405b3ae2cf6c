"""Is a search's driver alive? The process stat parser and the status a reader may trust.

A leaf: the report asks it whether a "running" search is really running, without importing the
fault machinery (resume, the reaper) that also needs these answers.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any


def proc_stat(pid: int | str) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks since boot) of a live process; None for a zombie
    or a process that is gone. The start time tells a process from a later one with its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))
    except (OSError, IndexError, ValueError):
        return None



def start_ticks(pid: int) -> int | None:
    """When a process started: a pid alone may have been reused."""
    stat = proc_stat(pid)
    return None if stat is None else stat[1]


def driver_info() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "start_ticks": start_ticks(os.getpid()),
            "started": dt.datetime.now().isoformat(timespec="seconds")}


def driver_alive(meta: dict[str, Any]) -> bool:
    """Whether the driver that wrote `meta` still runs (known only on its own host)."""
    driver = meta.get("driver") or {}
    if driver.get("host") != socket.gethostname() or not driver.get("pid"):
        return False
    pid = int(driver["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    ticks = driver.get("start_ticks")
    return ticks is None or start_ticks(pid) in (None, ticks)


def effective_status(meta: dict[str, Any]) -> str:
    """search.json's status, except that a "running" search whose driver is gone (kill -9, a
    lost head node) is reported as interrupted."""
    status = str(meta.get("status", "finished"))
    if status == "running" and (meta.get("driver") or {}).get("host") == socket.gethostname() \
            and not driver_alive(meta):
        return "interrupted"
    return status
