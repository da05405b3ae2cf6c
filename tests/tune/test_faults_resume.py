"""What `search --resume` takes from the user and what from the experiment
(`tune/faults/resume.py`), without a search: the flags it refuses, the request it stores, the
fingerprint that catches an edited space or budget, the experiments it will not resume.
test_resume.py resumes a real killed driver."""

from __future__ import annotations

import argparse
import json
import pickle
import socket
import subprocess

import pytest

from dnet_tune.errors import UserError
from dnet_tune.tune.driver import start_ticks
from dnet_tune.tune.faults import resume
from dnet_tune.tune.plan import Budget, Confirmation, SearchRequest


def test_a_flag_that_would_change_the_search_is_refused_by_name():
    defaults = argparse.Namespace(command="search", resume=None, quiet=False, address=None,
                                  optuna_storage=None, trials=None, seed=0, max_failures=3)
    # where Ray is, how to show it and the database's credentials may change
    allowed = argparse.Namespace(**{**vars(defaults), "resume": "r/exp", "quiet": True,
                                    "address": "ray://head:10001",
                                    "optuna_storage": "postgresql://u:p@db/x"})
    resume.refuse_changing_flags(allowed, defaults)
    changed = argparse.Namespace(**{**vars(allowed), "max_failures": 5})
    with pytest.raises(UserError) as err:
        resume.refuse_changing_flags(changed, defaults)
    assert str(err.value) == (
        "--max-failures cannot be combined with --resume: a resumed search runs with the "
        "settings it started with (search.json); drop --max-failures, or start a new search "
        "with --name")


def test_the_stored_request_is_what_to_run_not_where_or_how():
    req = SearchRequest(dataset="cifar10_lt", methods=["ce"], trials=4, seed=7,
                        address="ray://head:10001", optuna_storage="sqlite:///x.db",
                        resume="r/exp")
    stored = resume.stored_request(req)
    assert not {"address", "optuna_storage", "resume"} & set(stored)
    assert (stored["dataset"], stored["methods"], stored["trials"], stored["seed"]) == (
        "cifar10_lt", ["ce"], 4, 7)
    json.dumps(stored)  # it goes into search.json as it is


def _fingerprint(space, **over):
    args = {"budget": Budget(trials=4, max_epochs=6, grace_period=2, reduction_factor=2),
            "methods": ["difficulty_net", "ce"], "seed": 0,
            "confirmation": Confirmation(top=2, seeds=[1, 2]), "dataset": "digits_lt",
            "sets": ["optim.wd=0.001"], **over}
    return resume.fingerprint(str(space), **args)


def test_the_fingerprint_names_what_changed_since_the_search_started(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("methods: {}\n")
    started = _fingerprint(space)
    resume.check_fingerprint(started, _fingerprint(space), str(space))  # the same search
    assert started["budget"] == {"trials": 4.0, "max_epochs": 6.0, "grace_period": 2.0,
                                 "reduction_factor": 2.0}
    with pytest.raises(UserError, match=r"this experiment's seed changed since it started "
                                        r"\(0 → 1\); a resume must spend the original budget"):
        resume.check_fingerprint(started, _fingerprint(space, seed=1), str(space))
    fewer = Budget(trials=3, max_epochs=6, grace_period=2, reduction_factor=2)
    with pytest.raises(UserError, match="this experiment's budget changed"):
        resume.check_fingerprint(started, _fingerprint(space, budget=fewer), str(space))
    with pytest.raises(UserError, match="this experiment's confirm changed"):
        resume.check_fingerprint(started, _fingerprint(space, confirmation=None), str(space))
    space.write_text("methods: {ce: {}}\n")
    with pytest.raises(UserError, match=f"the search space file '{space}' changed since this "
                                        f"experiment started; put the original back"):
        resume.check_fingerprint(started, _fingerprint(space), str(space))


def _experiment(tmp_path, **meta):
    """search.json, and a whole (if empty) tuner.pkl where Ray's snapshot would be."""
    exp = tmp_path / "exp"
    exp.mkdir(exist_ok=True)
    (exp / "search.json").write_text(json.dumps(meta))
    (exp / "tuner.pkl").write_bytes(pickle.dumps({}))
    return str(exp)


REQUEST = {"dataset": "digits_lt", "methods": ["ce"], "trials": 4, "seed": 3,
           "space": "/old/place.yaml", "a_field_of_a_newer_version": 1}


def test_an_interrupted_experiment_gives_back_the_request_it_started_with(tmp_path):
    exp = _experiment(tmp_path, status="interrupted", request=REQUEST, fingerprint={},
                      space="/abs/space.yaml")
    meta, req = resume.load_for_resume(exp)
    assert meta["status"] == "interrupted"
    assert (req.dataset, req.methods, req.trials, req.seed) == ("digits_lt", ["ce"], 4, 3)
    assert req.space == "/abs/space.yaml"  # the resolved path search.json recorded


def test_a_running_experiment_whose_driver_is_gone_may_be_resumed(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    exp = _experiment(tmp_path, status="running", request=REQUEST, fingerprint={},
                      driver={"pid": gone.pid, "host": socket.gethostname()})
    assert resume.load_for_resume(exp)[1].trials == 4


def test_what_cannot_be_resumed_is_one_line(tmp_path):
    with pytest.raises(UserError, match="is not a dnet-tune experiment"):
        resume.load_for_resume(str(tmp_path / "nothing"))
    old = _experiment(tmp_path, status="interrupted")
    with pytest.raises(UserError, match="was written by an older dnet-tune that could not"):
        resume.load_for_resume(old)
    done = _experiment(tmp_path, status="finished", request=REQUEST, fingerprint={})
    with pytest.raises(UserError, match=f"'{done}' is finished; nothing to resume"):
        resume.load_for_resume(done)
    driver = subprocess.Popen(["sleep", "60"])
    try:
        live = _experiment(tmp_path, status="running", request=REQUEST, fingerprint={},
                           driver={"pid": driver.pid, "host": socket.gethostname(),
                                   "start_ticks": start_ticks(driver.pid)})
        with pytest.raises(UserError, match=f"still running \\(driver pid {driver.pid} on "
                                            f"this host\\); stop it first"):
            resume.load_for_resume(live)
    finally:
        driver.kill()
        driver.wait()
