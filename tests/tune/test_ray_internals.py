"""The one door to Ray's and Optuna's internals (`tune/ray_internals.py`), checked on their real
objects: when an upgrade moves or renames anything the search relies on, a test here fails and
names it. A second half reads the package's source: no other module touches a `_name` of theirs.

Every accessor is exercised on real objects: ASHA schedulers and Tune trials (stubs: nothing
runs), OptunaSearch with a real JournalStorage, Optuna's distributions, a Tuner written and
restored from disk, and, where only a running Tune has the object (the experiment snapshot,
Tune's interrupt signal), one tiny `Tuner.fit` on a Ray started with the door's own option.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import inspect
import json
import shutil
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from dnet_tune.tune import ray_internals

PACKAGE = Path(__file__).resolve().parents[2] / "dnet_tune"
DOOR = PACKAGE / "tune" / "ray_internals.py"
FOREIGN = ("ray", "optuna")


# ------------------------------------------------------------------------------ ASHA's rungs


def _asha() -> ASHAScheduler:
    asha = ASHAScheduler(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
    asha.set_search_properties("val_acc", "max")
    return asha


def _trial(tid: str) -> Trial:
    return Trial("fake", config={}, trial_id=tid, stub=True)


def test_asha_rungs_are_read_as_ray_keeps_them():
    asha = _asha()
    trials = [_trial(f"t{i}") for i in range(3)]
    assert ray_internals.asha_trials_added(asha) == 0
    for t in trials:
        asha.on_trial_add(None, t)
    assert ray_internals.asha_trials_added(asha) == 3
    # one bracket; its rungs from the last milestone down (grace 1, factor 2, max_t 4)
    assert ray_internals.asha_rungs(asha) == [[(4, {}), (2, {}), (1, {})]]
    decisions = [asha.on_trial_result(None, t, {"epoch": 1, "val_acc": val})
                 for t, val in zip(trials, (0.9, 0.8, 0.1), strict=True)]
    assert decisions == [TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.STOP]
    rungs = ray_internals.asha_rungs(asha)
    assert rungs == [[(4, {}), (2, {}), (1, {"t0": 0.9, "t1": 0.8, "t2": 0.1})]]
    assert ray_internals.asha_stopped(asha) == 2
    assert "num_stopped=2" in asha.debug_string()  # the count Ray itself reports
    rungs[0][2][1]["t9"] = 1.0  # a copy: changing it leaves the scheduler's own alone
    assert "t9" not in ray_internals.asha_rungs(asha)[0][2][1]


def test_asha_rungs_put_back_decide_as_the_original():
    original = _asha()
    for i, val in enumerate((0.9, 0.91, 0.92, 0.93)):
        original.on_trial_add(None, _trial(f"s{i}"))
        original.on_trial_result(None, _trial(f"s{i}"), {"epoch": 1, "val_acc": val})
    restored, fresh = _asha(), _asha()
    ray_internals.set_asha_rungs(restored, ray_internals.asha_rungs(original),
                                 ray_internals.asha_stopped(original) + 2)
    assert ray_internals.asha_rungs(restored) == ray_internals.asha_rungs(original)
    assert ray_internals.asha_stopped(restored) == 2
    weak = _trial("weak")
    for s in (restored, fresh):
        s.on_trial_add(None, weak)
    assert restored.on_trial_result(None, weak, {"epoch": 1, "val_acc": 0.1}) == \
        TrialScheduler.STOP
    assert fresh.on_trial_result(None, weak, {"epoch": 1, "val_acc": 0.1}) == \
        TrialScheduler.CONTINUE


def test_without_asha_there_are_no_rungs():
    fifo = FIFOScheduler()
    assert ray_internals.asha_rungs(fifo) == []
    assert ray_internals.asha_stopped(fifo) == 0
    assert ray_internals.asha_trials_added(fifo) == 0


def test_a_scheduler_s_metric_is_what_tune_reads():
    fifo = FIFOScheduler()
    ray_internals.set_scheduler_metric(fifo, "val_acc")
    assert fifo.metric == "val_acc"


# ----------------------------------------------------------------- OptunaSearch and Optuna


def _space(trial):
    trial.suggest_float("x", 0.0, 1.0)


def _searcher(journal: Path) -> tuple[OptunaSearch, JournalStorage]:
    storage = JournalStorage(JournalFileBackend(str(journal)))
    searcher = OptunaSearch(space=_space, metric="val_acc", mode="max", storage=storage,
                            sampler=optuna.samplers.TPESampler(seed=0), study_name="s")
    return searcher, storage


def test_optuna_search_s_study_and_trials(tmp_path):
    searcher, storage = _searcher(tmp_path / "a.journal")
    study = ray_internals.optuna_study(searcher)
    assert isinstance(study, optuna.Study) and study.study_name == "s"
    assert ray_internals.study_storage(study) is storage
    searcher.suggest("r0")
    searcher.suggest("r1")
    live = ray_internals.optuna_trials(searcher)
    assert sorted(live) == ["r0", "r1"] and all(isinstance(t, optuna.Trial) for t in live.values())
    frozen = study.get_trials(deepcopy=False)
    assert [ray_internals.storage_trial_id(t) for t in frozen] == [
        ray_internals.storage_trial_id(live["r0"]), ray_internals.storage_trial_id(live["r1"])]
    # the storage id is what the storage's trial-level calls take
    storage.set_trial_user_attr(ray_internals.storage_trial_id(frozen[1]), "k", "v")
    assert study.trials[1].user_attrs == {"k": "v"}


def test_told_trials_are_the_ones_optuna_search_ignores(tmp_path):
    searcher, _ = _searcher(tmp_path / "a.journal")
    study = ray_internals.optuna_study(searcher)
    for tid in ("r0", "r1"):
        searcher.suggest(tid)
    searcher.on_trial_complete("r0", {"val_acc": 0.5})
    told = ray_internals.told_trials(searcher)
    assert told == {"r0"}
    told.add("r1")  # as `studies.reconcile` marks a trial the journal already has finished
    searcher.on_trial_complete("r1", {"val_acc": 0.7})
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.RUNNING]


def test_a_sampler_s_settings_are_read_back_as_it_was_built():
    tpe = optuna.samplers.TPESampler(seed=1, n_startup_trials=3, n_ei_candidates=7,
                                     multivariate=True, group=False, constant_liar=False)
    assert ray_internals.sampler_settings(tpe) == {
        "class": "TPESampler", "n_startup_trials": 3, "n_ei_candidates": 7,
        "multivariate": True, "group": False, "constant_liar": False}
    assert ray_internals.sampler_settings(optuna.samplers.RandomSampler(seed=1)) == {
        "class": "RandomSampler"}


def test_a_rebound_search_writes_to_the_new_storage_only(tmp_path):
    old, new = tmp_path / "old.journal", tmp_path / "new.journal"
    searcher, _ = _searcher(old)
    searcher.suggest("r0")
    shutil.copy(old, new)
    before = old.read_bytes()
    moved = JournalStorage(JournalFileBackend(str(new)))
    ray_internals.rebind_storage(searcher, moved)
    assert ray_internals.study_storage(ray_internals.optuna_study(searcher)) is moved
    searcher.on_trial_complete("r0", {"val_acc": 0.5})
    searcher.suggest("r1")
    assert old.read_bytes() == before
    study = optuna.load_study(study_name="s", storage=moved)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.RUNNING]


@pytest.mark.parametrize(("dist", "inside", "outside"), [
    (FloatDistribution(0.1, 1.0, log=True), [0.1, 0.5, 1.0], [0.05, 2.0, "abc"]),
    (IntDistribution(1, 9, step=2), [1, 3, 9], [4, 11, 0]),
    (CategoricalDistribution([0.5, 2.0, "dynamic"]), [0.5, "dynamic"], [1.0, "static"]),
])
def test_a_distribution_says_what_it_holds(dist, inside, outside):
    assert all(ray_internals.distribution_contains(dist, v) for v in inside)
    assert not any(ray_internals.distribution_contains(dist, v) for v in outside)


# ---------------------------------------------------------------------------------- Ray Tune


class _Marked(tune.Callback):
    def __init__(self, mark: str) -> None:
        self.mark = mark


def _noop(config):
    return None


def test_a_restored_tuner_hands_back_its_unpickled_callbacks(tmp_path):
    marked = _Marked("ours")
    tune.Tuner(_noop, run_config=tune.RunConfig(storage_path=str(tmp_path), name="x",
                                                callbacks=[marked]))
    restored = tune.Tuner.restore(str(tmp_path / "x"), trainable=_noop)
    found = [c for c in ray_internals.restored_callbacks(restored) if isinstance(c, _Marked)]
    assert len(found) == 1 and found[0].mark == "ours"
    assert found[0] is not marked  # Ray's own copy from tuner.pkl, the one a restored run calls


def test_the_snapshot_files_are_the_ones_ray_2_60_restores_from():
    # an upgrade that renames one fails here by name; test_damaged_files.py checks each is
    # present in a real experiment and that a damaged one is refused before Ray starts
    assert ray_internals.snapshot_files() == [
        ("tuner.pkl", "pickle"), ("experiment_state-*.json", "json"),
        ("search_gen_state-*.json", "pickle"), ("searcher-state-*.pkl", "pickle"),
        ("callback-states-*.pkl", "pickle")]


def test_ray_init_takes_the_temp_dir_option(ray_here):
    assert (ray_here / "session_latest").exists()


@pytest.fixture(scope="module")
def ray_here(tmp_path_factory):
    """A local Ray started with the door's option (not conftest's `ray_local`: this is what
    `ray_session.connect` passes)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    temp = tmp_path_factory.mktemp("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             **ray_internals.temp_dir_option(str(temp)))
    yield temp
    ray.shutdown()


class _Snapshots(FIFOScheduler):
    """Calls the door where `PerMethodScheduler` does: when a trial ends."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: list[tuple[str, object]] = []  # (trial id, the checkpoint manager)

    def on_trial_complete(self, tune_controller, trial, result):
        super().on_trial_complete(tune_controller, trial, result)
        self.ended.append((trial.trial_id, ray_internals.force_experiment_snapshot(
            tune_controller)))


class _Witness(tune.Callback):
    """At the end of the step in which the first trial ended: is it ended in the snapshot in
    the storage? Then ends the run with Tune's own interrupt."""

    def __init__(self, scheduler: _Snapshots, experiment: Path) -> None:
        self.scheduler = scheduler
        self.experiment = experiment
        self.snapshot: dict[str, str] | None = None
        self.sent: bool | None = None
        self.final: dict[str, str] = {}

    def on_step_end(self, iteration, trials, **info):
        if not self.scheduler.ended or self.snapshot is not None:
            return
        _, manager = self.scheduler.ended[0]
        syncer = ray_internals.snapshot_syncer(manager)
        if syncer is None:  # the test below says so
            self.snapshot = {}
            return
        syncer.wait()
        (path,) = glob.glob(str(self.experiment / "experiment_state-*.json"))
        state = json.loads(Path(path).read_text())
        trials_saved = [json.loads(t[0]) for t in state["trial_data"]]
        self.snapshot = {t["trial_id"]: t["status"] for t in trials_saved}
        self.sent = ray_internals.end_tune_run()

    def on_experiment_end(self, trials, **info):
        self.final = {t.trial_id: t.status for t in trials}


def test_a_running_tune_snapshots_when_asked_and_ends_on_its_interrupt(ray_here, tmp_path,
                                                                       monkeypatch):
    """Tune's periodic snapshots are made rare here, so only the forced one can show the first
    trial ended in the same step; then Tune's interrupt ends the run before the second."""
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "100000")

    def short_then_long(config):  # defined here: Ray's workers get it by value
        for epoch in range(1, (3 if config["i"] == 0 else 3000) + 1):
            tune.report({"epoch": epoch, "val_acc": 0.5})
            time.sleep(0.01)

    scheduler = _Snapshots()
    witness = _Witness(scheduler, tmp_path / "x")
    tuner = tune.Tuner(
        short_then_long, param_space={"i": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="x", verbose=0,
                                  callbacks=[witness]))
    tuner.fit()
    first, manager = scheduler.ended[0]
    assert manager is not None
    assert witness.snapshot is not None and witness.snapshot[first] == "TERMINATED"
    assert witness.sent is True
    assert list(witness.final.values()).count("TERMINATED") == 1  # the second never finished


def test_tune_s_interrupt_is_not_sent_without_tune_s_handler():
    """Outside `Tuner.fit` SIGUSR1 would kill the process: nothing is sent."""
    import signal

    previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    try:
        assert ray_internals.end_tune_run() is False
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_no_controller_no_snapshot():
    assert ray_internals.force_experiment_snapshot(None) is None
    assert ray_internals.snapshot_syncer(None) is None


# ------------------------------------------------ no other module touches a `_name` of theirs


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# documented public names that begin with an underscore (the standard library's own reference
# lists them): not private, so not the door's to hold
PUBLIC_UNDERSCORED = frozenset({"os._exit"})


def _documented(node: ast.Attribute) -> bool:
    return (isinstance(node.value, ast.Name)
            and f"{node.value.id}.{node.attr}" in PUBLIC_UNDERSCORED)


def _foreign_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> the Ray or Optuna name it was imported as."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in FOREIGN:
                    out[(a.asname or a.name).split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FOREIGN:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _is_own(expr: ast.expr) -> bool:
    """`self`, `cls` or `super()`: the object's own names (or, through `super()`, its base's)."""
    return ((isinstance(expr, ast.Name) and expr.id in ("self", "cls"))
            or (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name)
                and expr.func.id == "super"))


def _root(expr: ast.expr) -> str | None:
    while isinstance(expr, ast.Attribute):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def _self_privates_of_foreign_bases(tree: ast.Module, module: object) -> list[str]:
    """`self._x` in a class deriving from a Ray or Optuna class, where `_x` is theirs."""
    foreign = _foreign_names(tree)
    out = []
    for cls_node in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        if not any(_root(b) in foreign for b in cls_node.bases):
            continue
        cls = getattr(module, cls_node.name)
        theirs = [b for b in cls.__mro__ if b.__module__.split(".")[0] in FOREIGN]
        for node in ast.walk(cls_node):
            if (isinstance(node, ast.Attribute) and _is_own(node.value)
                    and not (isinstance(node.value, ast.Name) and node.value.id == "cls")
                    and _is_private(node.attr)
                    and any(_defines(b, node.attr) for b in theirs)):
                out.append(f"line {node.lineno}: self.{node.attr} (of {cls_node.name}'s "
                           f"Ray/Optuna base)")
    return out


def _defines(cls: type, name: str) -> bool:
    if name in vars(cls):
        return True
    try:
        return f"self.{name}" in inspect.getsource(cls)
    except (OSError, TypeError):
        return False


def private_uses(path: Path, module: object | None = None) -> list[str]:
    """Every place in `path` that reaches a private name of an object it does not own: `x._y`
    (any `x` but self/cls), getattr/hasattr/setattr/delattr with a `_name`, a `_name=`
    keyword, a `["_name"]` key, an import of a private Ray/Optuna module or name, and (given
    the imported `module`) `self._y` where `_y` belongs to a Ray/Optuna base class."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if (isinstance(node, ast.Attribute) and _is_private(node.attr)
                and not _is_own(node.value) and not _documented(node)):
            out.append(f"{where}: .{node.attr}")
        elif isinstance(node, ast.Call):
            fn = node.func.id if isinstance(node.func, ast.Name) else None
            if (fn in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str) and _is_private(node.args[1].value)):
                out.append(f"{where}: {fn}(..., {node.args[1].value!r})")
            out += [f"{where}: {k.arg}=" for k in node.keywords if k.arg and _is_private(k.arg)]
        elif (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
              and isinstance(node.slice.value, str) and _is_private(node.slice.value)):
            out.append(f"{where}: [{node.slice.value!r}]")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FOREIGN:
            names = [*(node.module or "").split("."), *(a.name for a in node.names)]
            if any(_is_private(n) for n in names):
                out.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            out += [f"{where}: import {a.name}" for a in node.names
                    if a.name.split(".")[0] in FOREIGN
                    and any(_is_private(n) for n in a.name.split("."))]
    if module is not None:
        out += _self_privates_of_foreign_bases(tree, module)
    return out


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != DOOR)


def _import(path: Path) -> object:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))


def _has_foreign_class(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    foreign = _foreign_names(tree)
    return any(isinstance(n, ast.ClassDef) and any(_root(b) in foreign for b in n.bases)
               for n in tree.body)


def test_no_module_but_the_door_touches_a_private_name_of_ray_or_optuna():
    files = _package_files()
    assert len(files) > 60  # the walk really saw the package
    with_classes = [p for p in files if _has_foreign_class(p)]
    assert len(with_classes) >= 4  # per_method, runner, interrupt, live_results, ...
    found = {str(p.relative_to(PACKAGE)): uses for p in files
             if (uses := private_uses(p, _import(p) if p in with_classes else None))}
    assert not found, f"only tune/ray_internals.py may touch these: {found}"


def test_the_scan_sees_every_kind_of_planted_violation(tmp_path):
    planted = tmp_path / "planted_internals.py"
    planted.write_text(
        "import ray\n"
        "from ray.tune.schedulers import FIFOScheduler\n"
        "from ray.air._internal import usage\n"
        "\n"
        "class Sneaky(FIFOScheduler):\n"
        "    def set_search_properties(self, metric, mode, **spec):\n"
        "        self._metric = metric\n"
        "        self._ours = 1\n"
        "        return True\n"
        "\n"
        "def f(study, searcher, kwargs):\n"
        "    study._storage.get_trial(0)\n"
        "    getattr(searcher, '_ot_trials', {})\n"
        "    ray.init(_temp_dir='/tmp/x')\n"
        "    kwargs['_temp_dir'] = '/tmp/x'\n"
        "\n"
        "class Plain:\n"
        "    def _x(self):\n"
        "        return 1\n"
        "\n"
        "class Child(Plain):\n"
        "    def y(self):\n"
        "        return super()._x()\n"
        "\n"
        "class Sneakier(FIFOScheduler):\n"
        "    def z(self):\n"
        "        return super()._metric\n"
        "\n"
        "def g(os, study):\n"
        "    os._exit(0)\n"  # documented (PUBLIC_UNDERSCORED): not reported
        "    study._exit(0)\n"
    )
    spec = importlib.util.spec_from_file_location("planted_internals", planted)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["planted_internals"] = module
    try:
        spec.loader.exec_module(module)
        found = private_uses(planted, module)
    finally:
        del sys.modules["planted_internals"]
    assert sorted(found) == sorted([
        "line 3: from ray.air._internal import ...",
        "line 12: ._storage",
        "line 13: getattr(..., '_ot_trials')",
        "line 14: _temp_dir=",
        "line 15: ['_temp_dir']",
        "line 7: self._metric (of Sneaky's Ray/Optuna base)",
        "line 27: self._metric (of Sneakier's Ray/Optuna base)",
        "line 31: ._exit",
    ])  # not `self._ours` nor Child's `super()._x()`: a class's own private names are its own;
    # not `os._exit` (line 30), a documented name, but the same name on another object


def test_the_door_itself_is_what_the_scan_would_refuse():
    """The scan is not blind to the real thing: the door's own accesses are all caught."""
    found = " ".join(private_uses(DOOR))
    for name in ("_checkpoint_manager", "_brackets", "_rungs", "_num_stopped", "_trial_info",
                 "_ot_study", "_ot_trials", "_completed_trials", "_trial_id", "_contains",
                 "_local_tuner", "_metric", "_storage"):
        assert name in found, name
