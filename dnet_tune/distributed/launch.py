"""Start N local processes that form one torch.distributed group and run a function on each.

Only the CLI's `train --workers N` uses this; a Ray Train worker gets its group from Ray and calls
`dnet_tune.distributed.trainer.run_distributed` directly. A user's mistake raised on a rank
(UserError) comes back to the caller as the same one line; a diverged run as FloatingPointError;
anything else as torch's ProcessRaisedException with the rank's traceback (a bug keeps it). When
one rank fails, torch stops the others, so none is left waiting in a collective. A rank that
ends skips the interpreter's finalization (`_end_without_finalizing` says why).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import queue
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dnet_tune.errors import UserError

USER_ERROR_EXIT = 2
DIVERGED_EXIT = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, world: int, port: int, backend: str, fn: Callable[..., Any],
           args: tuple[Any, ...], errors: Any) -> None:
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        fn(*args)
        code = 0
    except UserError as exc:
        errors.put(("user", str(exc)))
        code = USER_ERROR_EXIT
    except FloatingPointError as exc:
        errors.put(("diverged", str(exc)))
        code = DIVERGED_EXIT
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    _end_without_finalizing(code)


def _end_without_finalizing(code: int) -> NoReturn:
    """End a rank whose work is done, skipping the interpreter's finalization.

    Why: after the meta step's dual (JVP) forward through a model whose parameters require
    grad, `destroy_process_group` no longer ends gloo's worker threads (torch 2.14.1, seen in
    the rank's thread list). It is a one-time effect of the first such dual op after the group
    was made: the same op run once before `init_process_group` leaves the threads to end (in a
    2-process script; importing torch's JVP decompositions first does not). What inside torch
    holds the group was not found, so this does not depend on it. A worker
    thread still dropping its last all-reduce needs the GIL to free that tensor; if the main
    thread is finalizing by then, Python ends the waiting thread, which std::terminate turns
    into SIGABRT. `train --workers 2` so failed with "training worker 1 exited with code -6"
    after its run had finished (core dump: `ProcessGroupGloo::runLoop` -> `~AsyncWork` ->
    `take_gil` -> `pthread_exit`, the main thread in `Py_FinalizeEx`): the two resume tests of
    tests/core/test_distributed.py in 5 of 28 runs before this, 0 of 25 after.

    What a rank writes is written and closed before `fn` returns (atomic files). Garbage is
    collected first, so a data loader's worker processes are shut down as at a normal exit;
    then the console is flushed. An unexpected exception never gets here: it reaches torch's
    spawn wrapper, which records its traceback for the caller.
    """
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def spawn(world: int, backend: str, fn: Callable[..., Any], *args: Any) -> None:
    """Run `fn(*args)` on ranks 0..world-1 (rank from torch.distributed inside `fn`) and wait."""
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    procs = mp.start_processes(_entry, args=(world, free_port(), backend, fn, args, errors),
                               nprocs=world, join=False, start_method="spawn")
    # torch logs a warning for each rank it stops after another failed; the failure itself is
    # what the user needs (one line for a UserError), not the clean-up
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    level = spawn_log.level
    spawn_log.setLevel(logging.ERROR)
    try:
        while not procs.join():
            pass
    except mp.ProcessExitedException as exc:
        reported = _first(errors)
        if reported is not None:
            kind, message = reported
            if kind == "user":
                raise UserError(message) from None
            raise FloatingPointError(message) from None
        raise RuntimeError(f"training worker {exc.error_index} exited with code "
                           f"{exc.exit_code}") from exc
    finally:
        spawn_log.setLevel(level)


def _first(errors: Any) -> tuple[str, str] | None:
    try:
        return None if errors.empty() else tuple(errors.get())
    except (OSError, EOFError, queue.Empty):
        return None
