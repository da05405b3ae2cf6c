"""Ctrl-C during a search: the first stops every trial at its next epoch boundary, the second
stops the driver at once. Either way the experiment stays resumable (`search --resume`).

Ray Tune's own SIGINT handler ends the run at once: each running trial loses the epoch it was
in. Ours (Tune's is disabled with TUNE_DISABLE_SIGINT_HANDLER for the run) only records the
request; then
- the scheduler answers PAUSE to each running trial's next result, so Tune registers the
  checkpoint that came with it and stops the actor; it starts no other trial, and the searcher
  proposes none (`per_method` reads `requested()`);
- once no trial is running, `StopAtEpochBoundary` asks Tune to end the run exactly as Tune's
  own interrupt does (`ray_internals.end_tune_run`): a last experiment snapshot, then
  cleanup. Paused trials are unfinished, so a resume continues them from those checkpoints;
- during the confirmation, runs still going are cancelled (a run restarts from scratch on
  resume; finished runs are already in confirm.parquet).
A second Ctrl-C raises KeyboardInterrupt wherever the driver is; what was saved up to then
(Tune's last snapshot, our tables) is what a resume starts from.

The flag is module state, not an attribute: the scheduler and searcher that read it are
pickled into the experiment (and unpickled by a resume), a signal flag must not travel with
them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ray import tune

from dnet_tune.tune import ray_internals

TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"


class _State:
    def __init__(self, note: Callable[[str], None] | None = None) -> None:
        self.count = 0  # Ctrl-Cs received during this search
        self.ended = False  # Tune was asked to end its run
        self.note = note  # prints a line above the live view


_STATE = _State()


def requested() -> bool:
    """Whether the user asked the search to stop (first Ctrl-C)."""
    return _STATE.count > 0


def _on_sigint(signum: int, frame: Any) -> None:
    _STATE.count += 1
    if _STATE.count > 1:
        raise KeyboardInterrupt


@contextlib.contextmanager
def catching(note: Callable[[str], None] | None = None) -> Iterator[None]:
    """Our SIGINT handling for the duration of a search (signals only reach the main thread;
    elsewhere, e.g. a search run from a test thread, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _STATE
    _STATE = _State(note)
    previous = signal.signal(signal.SIGINT, _on_sigint)
    env = os.environ.get(TUNE_SIGINT_ENV)
    os.environ[TUNE_SIGINT_ENV] = "1"
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if env is None:
            os.environ.pop(TUNE_SIGINT_ENV, None)
        else:
            os.environ[TUNE_SIGINT_ENV] = env


class StopAtEpochBoundary(tune.Callback):
    """Ends Tune's run once every trial that was running when Ctrl-C came has paused."""

    def __init__(self) -> None:
        self.noted = False

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if not requested():
            return
        if not self.noted and _STATE.note is not None:
            _STATE.note("stopping: every running trial stops at the end of its current epoch "
                      "(Ctrl-C again to stop at once)")
        self.noted = True
        if not _STATE.ended and not any(t.status == "RUNNING" for t in trials):
            _STATE.ended = True
            ray_internals.end_tune_run()  # Tune's own "interrupt the run"
