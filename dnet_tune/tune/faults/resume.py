"""`search --resume <storage>/<name>`: what a resumed search may take from the user and what
it must take from the experiment.

A resume spends the budget the experiment was started with exactly once, so everything that
decides what runs (dataset, methods, budget, space, seeds, resources, fixed `--set` values...)
comes from the request stored in search.json, never from flags; a flag that would change it is
refused. The space file is read again (its path is stored), so a fingerprint of its content,
the budget, the methods and the seeds, taken when the search started, must match: an edited
space file would silently make a different search.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from dnet_tune.errors import UserError
from dnet_tune.tune.driver import driver_alive
from dnet_tune.tune.faults import ray_snapshot, studies
from dnet_tune.tune.plan import Budget, Confirmation, SearchRequest
from dnet_tune.tune.results import read_confirm, read_search_json

# what a resume may be given: how to show it, where Ray is, the database's credentials
RESUME_FLAGS = frozenset({"command", "resume", "quiet", "address", "optuna_storage"})
# SearchRequest fields that are where/how to run, not what to run
NOT_STORED = frozenset({"address", "optuna_storage", "resume"})


def refuse_changing_flags(args: argparse.Namespace, defaults: argparse.Namespace) -> None:
    """One line naming the first flag that a resume would have to ignore."""
    for key, value in vars(args).items():
        if key in RESUME_FLAGS or value == getattr(defaults, key, value):
            continue
        flag = "--" + key.replace("_", "-")
        raise UserError(f"{flag} cannot be combined with --resume: a resumed search runs with "
                        f"the settings it started with (search.json); drop {flag}, or start a "
                        f"new search with --name")


def stored_request(req: SearchRequest) -> dict[str, Any]:
    return {f.name: getattr(req, f.name) for f in fields(req) if f.name not in NOT_STORED}


def fingerprint(space_path: str, budget: Budget, methods: list[str], seed: int,
                confirmation: Confirmation | None, dataset: str,
                sets: list[str]) -> dict[str, Any]:
    """What decides a search's trials and their number, with one digest over all of it."""
    parts = {
        "space_sha256": hashlib.sha256(Path(space_path).read_bytes()).hexdigest(),
        "budget": {k: float(v) for k, v in vars(budget).items()},
        "methods": list(methods),
        "seed": seed,
        "confirm": ({"top": confirmation.top, "seeds": confirmation.seeds}
                    if confirmation else None),
        "dataset": dataset,
        "sets": list(sets),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {**parts, "digest": digest}


def check_fingerprint(stored: dict[str, Any], now: dict[str, Any], space_path: str) -> None:
    if stored.get("digest") == now["digest"]:
        return
    if stored.get("space_sha256") != now["space_sha256"]:
        raise UserError(f"the search space file '{space_path}' changed since this experiment "
                        f"started; put the original back to resume, or start a new search "
                        f"with --name")
    what = next((k for k in now if k != "digest" and stored.get(k) != now[k]), "settings")
    raise UserError(f"this experiment's {what} changed since it started ({stored.get(what)} → "
                    f"{now[what]}); a resume must spend the original budget: start a new "
                    f"search with --name")


def load_for_resume(exp: str) -> tuple[dict[str, Any], SearchRequest]:
    """search.json of a resumable experiment and the request it was started with.

    Every file of ours that the resume reads (search.json, confirm.parquet, the journal) is
    read here first, and Ray's snapshot files are checked (`ray_snapshot`), before Ray starts
    and anything is written: a damaged one is one line and the experiment stays as it was.
    (trials.parquet and summary.parquet are not read: the resume writes them again from Ray's
    records.)
    """
    meta = read_search_json(exp, "pass <storage>/<name> of a search to --resume")
    if "request" not in meta or "fingerprint" not in meta:
        raise UserError(f"'{exp}' was written by an older dnet-tune that could not resume")
    if meta.get("status") == "finished":
        raise UserError(f"'{exp}' is finished; nothing to resume (see dnet-tune report {exp})")
    if meta.get("status") == "running" and driver_alive(meta):
        raise UserError(f"'{exp}' is still running (driver pid {meta['driver']['pid']} on "
                        f"this host); stop it first (Ctrl-C), then resume")
    read_confirm(exp)
    if meta.get("optuna_storage") in (None, studies.JOURNAL):  # not a database's
        studies.check_journal(studies.default_location(exp))
    ray_snapshot.check(exp)
    known = {f.name for f in fields(SearchRequest)}
    req = SearchRequest(**{k: v for k, v in meta["request"].items() if k in known})
    req.space = meta.get("space") or req.space
    return meta, req
