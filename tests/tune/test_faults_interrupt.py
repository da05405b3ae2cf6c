"""Ctrl-C handling (`tune/faults/interrupt.py`) in this process, without a search: what the first
and the second SIGINT do, what is restored afterwards, and when the run is asked to end.
test_interrupt.py checks the same on a real driver."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from types import SimpleNamespace

import pytest

from dnet_tune.tune.faults import interrupt


def test_the_first_ctrl_c_is_a_request_the_second_stops_at_once(monkeypatch):
    monkeypatch.setenv(interrupt.TUNE_SIGINT_ENV, "0")
    before = signal.getsignal(signal.SIGINT)
    with interrupt.catching():
        assert not interrupt.requested()
        assert os.environ[interrupt.TUNE_SIGINT_ENV] == "1"  # Tune's own handler is off
        signal.raise_signal(signal.SIGINT)
        assert interrupt.requested()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    assert os.environ[interrupt.TUNE_SIGINT_ENV] == "0"


def test_each_search_starts_without_a_request_and_leaves_the_environment_as_it_was(monkeypatch):
    monkeypatch.delenv(interrupt.TUNE_SIGINT_ENV, raising=False)
    with interrupt.catching():
        signal.raise_signal(signal.SIGINT)
    with interrupt.catching():
        assert not interrupt.requested()  # the last search's Ctrl-C is not this one's
    assert interrupt.TUNE_SIGINT_ENV not in os.environ


def test_outside_the_main_thread_nothing_is_changed(monkeypatch):
    monkeypatch.delenv(interrupt.TUNE_SIGINT_ENV, raising=False)
    before = signal.getsignal(signal.SIGINT)
    seen = {}

    def search():
        with interrupt.catching():
            seen["env"] = os.environ.get(interrupt.TUNE_SIGINT_ENV)
            seen["handler"] = signal.getsignal(signal.SIGINT)

    thread = threading.Thread(target=search)
    thread.start()
    thread.join()
    assert seen == {"env": None, "handler": before}


def _running(*statuses):
    return [SimpleNamespace(status=s) for s in statuses]  # what the callback reads of a Trial


def _wait(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    return check()


def test_the_run_ends_once_no_trial_is_running_and_only_once():
    notes, ends = [], []
    previous = signal.signal(signal.SIGUSR1, lambda *_: ends.append(1))  # Tune's, in a run
    try:
        stop = interrupt.StopAtEpochBoundary()
        with interrupt.catching(notes.append):
            stop.on_step_end(1, _running("RUNNING", "PENDING"))
            assert notes == [] and ends == []  # no Ctrl-C yet
            signal.raise_signal(signal.SIGINT)
            stop.on_step_end(2, _running("RUNNING", "PAUSED"))
            stop.on_step_end(3, _running("RUNNING", "PAUSED"))
            assert notes == ["stopping: every running trial stops at the end of its current "
                             "epoch (Ctrl-C again to stop at once)"]
            assert ends == []  # a trial is still in its epoch
            stop.on_step_end(4, _running("PAUSED", "PAUSED", "PENDING"))
            assert _wait(lambda: ends == [1])
            stop.on_step_end(5, _running("PAUSED"))
            assert ends == [1] and len(notes) == 1
            restored = pickle.loads(pickle.dumps(stop))  # in Tune's experiment snapshot
            assert restored.noted is False
    finally:
        signal.signal(signal.SIGUSR1, previous)
