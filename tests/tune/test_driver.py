"""Driver liveness (`tune/driver.py`) with real processes: the /proc stat parser the watchdog and
resume rely on, and the status a reader may trust. test_resume.py tells a live driver from a
reused pid."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from dnet_tune.tune import driver


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_live_process_s_parent_and_start_a_zombie_s_and_a_gone_one_s_nothing(tmp_path):
    # a process name with ") " in it: the parser must split at the last parenthesis
    odd = tmp_path / "x) 1 2 y"
    odd.symlink_to(shutil.which("sleep"))
    child = subprocess.Popen([str(odd), "60"])
    try:
        assert "x) 1 2 y" in Path(f"/proc/{child.pid}/stat").read_text()
        stat = driver.proc_stat(child.pid)
        assert stat is not None and stat[0] == os.getpid()
        assert stat[1] == driver.start_ticks(child.pid) > driver.start_ticks(os.getpid())
    finally:
        child.kill()
    deadline = time.monotonic() + 30
    while _state(child.pid) != "Z" and time.monotonic() < deadline:  # killed, not yet reaped
        time.sleep(0.01)
    assert _state(child.pid) == "Z"
    assert driver.proc_stat(child.pid) is None
    child.wait()
    assert driver.proc_stat(child.pid) is None and driver.start_ticks(child.pid) is None
    assert driver.proc_stat("not-a-pid") is None


def test_this_driver_s_record_and_the_statuses_a_reader_gets():
    info = driver.driver_info()
    assert (info["pid"], info["host"]) == (os.getpid(), socket.gethostname())
    assert info["start_ticks"] == driver.proc_stat(os.getpid())[1]
    # the process asking is never its own stale driver (a resume in the same process)
    assert not driver.driver_alive({"driver": info})
    assert driver.effective_status({"status": "running", "driver": info}) == "interrupted"
    assert driver.effective_status({"status": "finished", "driver": info}) == "finished"
    assert driver.effective_status({"status": "running"}) == "running"  # no driver recorded
    assert driver.effective_status({}) == "finished"  # written before statuses existed
