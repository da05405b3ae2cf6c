"""Search spaces: `search_spaces/<dataset>.yaml` -> a validated Optuna define-by-run function.

A file holds the search budget, fixed overrides and the distributions, per method:

    budget: {trials: 16, max_epochs: 12, grace_period: 2, reduction_factor: 2}
    smoke:  {trials: 4, max_epochs: 3, grace_period: 1, reduction_factor: 2}
    fixed:  {data: {batch_size: 64}}          # config overrides for every trial
    common: {optim.lr: {type: float, low: 0.01, high: 0.2, log: true}}
    methods:
      difficulty_net:
        dn.depth: {type: int, low: 1, high: 3, virtual: true}
        dn.width: {type: int, low: 64, high: 1024, log: true, per_layer: dn.depth, into: dn.hidden}
        method.meta_interval: {type: categorical, choices: [1, 2], when: {method.meta_grad: full}}

Names are dotted config keys. `virtual` parameters only steer the structure; `per_layer`
samples one value per layer (`dn.width_0`, ...) and assembles them into the `into` list key;
`when` samples a parameter only if earlier ones have the given values. Define-by-run is what
lets the conditional structure exist at all (a fixed dict space cannot express it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dnet_tune.config import config_from_dict, merge, yaml_load
from dnet_tune.errors import UserError


def bundled_spaces_dir() -> Path:
    """`search_spaces/` of a checkout, else the copy a wheel ships as `dnet_tune/search_spaces`."""
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "search_spaces"
    return checkout if checkout.is_dir() else here.parents[1] / "search_spaces"


PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "when", "virtual", "per_layer",
              "into"}
BUDGET_KEYS = {"trials", "max_epochs", "grace_period", "reduction_factor"}
TOP_KEYS = {"budget", "smoke", "fixed", "common", "methods", "description"}


@dataclass
class Budget:
    trials: int
    max_epochs: int
    grace_period: int
    reduction_factor: float


@dataclass
class Param:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)
    when: dict[str, Any] = field(default_factory=dict)
    virtual: bool = False
    per_layer: str | None = None
    into: str | None = None

    def suggest(self, trial: Any, name: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low or 0), int(self.high or 0), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(name, float(self.low or 0.0), float(self.high or 0.0),
                                   log=self.log, step=self.step)


@dataclass
class SearchSpace:
    path: str
    budget: Budget
    smoke: Budget
    fixed: dict[str, Any]
    common: list[Param]
    methods: dict[str, list[Param]]

    def params_for(self, method: str) -> list[Param]:
        return self.common + self.methods.get(method, [])

    def virtual_names(self, method: str) -> set[str]:
        names = set()
        for p in self.params_for(method):
            if p.virtual:
                names.add(p.name)
            if p.per_layer:
                names.add(p.name)
        return names

    def define_by_run(self, method: str) -> DefineByRun:
        return DefineByRun(self.params_for(method))

    def pin(self, fixed: dict[str, Any]) -> tuple[SearchSpace, list[str]]:
        """The space without the parameters that `fixed` (dotted key: value) sets.

        A `--set optim.lr=0.05` must hold in every trial, not be overwritten by a sampled
        value. Conditions on a pinned parameter are resolved against its value (a parameter
        whose condition can no longer hold is dropped too), and virtual parameters left
        steering nothing go. Returns the new space and the names that were removed.
        """
        removed: list[str] = []

        def keep(params: list[Param]) -> list[Param]:
            out: list[Param] = []
            for p in params:
                target = p.into if p.per_layer else p.name
                if target in fixed or p.name in fixed:
                    removed.append(p.name)
                    continue
                if any(k in fixed and fixed[k] != v for k, v in p.when.items()):
                    removed.append(p.name)
                    continue
                when = {k: v for k, v in p.when.items() if k not in fixed}
                out.append(replace(p, when=when))
            steering = {p.per_layer for p in out if p.per_layer}
            for p in [p for p in out if p.virtual and p.name not in steering]:
                out.remove(p)
                removed.append(p.name)
            return out

        common = keep(self.common)
        methods = {m: keep(ps) for m, ps in self.methods.items()}
        pinned = SearchSpace(self.path, self.budget, self.smoke, self.fixed, common, methods)
        return pinned, sorted(set(removed))


@dataclass
class DefineByRun:
    """Optuna define-by-run function (a picklable object: Tune saves the searcher's state).

    Returns the assembled per-layer lists as constants, which Tune merges into the config.
    """

    params: list[Param]

    def __call__(self, trial: Any) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for p in self.params:
            if any(chosen.get(k, _MISSING) != v for k, v in p.when.items()):
                continue
            if p.per_layer:
                count = int(chosen[p.per_layer])
                values = [p.suggest(trial, f"{p.name}_{i}") for i in range(count)]
                constants[p.into or p.name] = values
            else:
                chosen[p.name] = p.suggest(trial, p.name)
        return constants


def apply_flat(base: dict[str, Any], flat: dict[str, Any], virtual: set[str] | frozenset[str]
               ) -> dict[str, Any]:
    """Flat trial config (Optuna names + assembled constants) merged over `base` as nested keys.

    Structural names (virtual params and the per-layer samples `name_0`, `name_1`, ...) steer
    the sampling only and are skipped; everything else is a dotted config key.
    """
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        stem, _, index = key.rpartition("_")
        if key in virtual or (index.isdigit() and stem in virtual):
            continue
        nested = merge(nested, _nest(key, value))
    return merge(base, nested)


_MISSING = object()


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"optim": {"lr": 0.1}}` -> `{"optim.lr": 0.1}` (lists are values, not levels)."""
    out: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _nest(key: str, value: Any) -> dict[str, Any]:
    node: Any = value
    for part in reversed(key.split(".")):
        node = {part: node}
    return dict(node)


# ----------------------------------------------------------------------------- loading


def default_space_path(dataset: str) -> Path:
    return bundled_spaces_dir() / f"{dataset}.yaml"


def _fail(path: str, key: str, msg: str) -> UserError:
    return UserError(f"search space '{path}': {key}: {msg}")


def _number(path: str, key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(path, key, f"must be a number, got {v!r}")
    return float(v)


def _budget(path: str, key: str, raw: Any) -> Budget:
    if not isinstance(raw, dict):
        raise _fail(path, key, "must be a mapping with " + ", ".join(sorted(BUDGET_KEYS)))
    unknown = set(raw) - BUDGET_KEYS
    if unknown:
        raise _fail(path, f"{key}.{sorted(unknown)[0]}", "unknown key; valid: "
                    + ", ".join(sorted(BUDGET_KEYS)))
    missing = BUDGET_KEYS - set(raw)
    if missing:
        raise _fail(path, f"{key}.{sorted(missing)[0]}", "missing")
    for k in ("trials", "max_epochs", "grace_period"):
        if isinstance(raw[k], bool) or not isinstance(raw[k], int) or raw[k] < 1:
            raise _fail(path, f"{key}.{k}", f"must be an integer >= 1, got {raw[k]!r}")
    rf = _number(path, f"{key}.reduction_factor", raw["reduction_factor"])
    if rf <= 1:
        raise _fail(path, f"{key}.reduction_factor", f"must be > 1, got {rf}")
    if raw["grace_period"] > raw["max_epochs"]:
        raise _fail(path, f"{key}.grace_period", "must be <= max_epochs")
    return Budget(raw["trials"], raw["max_epochs"], raw["grace_period"], rf)


def _param(path: str, key: str, name: str, raw: Any, seen: dict[str, Param]) -> Param:
    where = f"{key}.{name}"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be a mapping with a 'type'")
    unknown = set(raw) - PARAM_KEYS
    if unknown:
        raise _fail(path, f"{where}.{sorted(unknown)[0]}", "unknown key; valid: "
                    + ", ".join(sorted(PARAM_KEYS)))
    ptype = raw.get("type")
    if ptype not in ("float", "int", "categorical"):
        raise _fail(path, f"{where}.type", f"must be float, int or categorical, got {ptype!r}")
    p = Param(name=name, type=ptype, log=bool(raw.get("log", False)),
              virtual=bool(raw.get("virtual", False)), per_layer=raw.get("per_layer"),
              into=raw.get("into"))
    if ptype == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(path, f"{where}.choices", "must be a non-empty list")
        if len({repr(c) for c in choices}) != len(choices):
            raise _fail(path, f"{where}.choices", "has duplicates")
        p.choices = choices
    else:
        for k in ("low", "high"):
            if k not in raw:
                raise _fail(path, f"{where}.{k}", "missing")
        p.low = _number(path, f"{where}.low", raw["low"])
        p.high = _number(path, f"{where}.high", raw["high"])
        if ptype == "int" and (p.low != int(p.low) or p.high != int(p.high)):
            raise _fail(path, where, "int bounds must be whole numbers")
        if not p.low < p.high:
            raise _fail(path, where, f"empty or inverted range: low {raw['low']} must be < "
                                     f"high {raw['high']}")
        if p.log and p.low <= 0:
            raise _fail(path, f"{where}.low", f"log range needs low > 0, got {raw['low']}")
        if "step" in raw:
            p.step = _number(path, f"{where}.step", raw["step"])
            if p.step <= 0 or p.log:
                raise _fail(path, f"{where}.step", "must be > 0 and not used with log")
    when = raw.get("when", {})
    if not isinstance(when, dict):
        raise _fail(path, f"{where}.when", "must be a mapping of earlier parameter: value")
    for ref in when:
        if ref not in seen:
            raise _fail(path, f"{where}.when.{ref}", "must name an earlier parameter")
    p.when = dict(when)
    if p.per_layer is not None:
        ref = seen.get(p.per_layer)
        if ref is None or ref.type != "int" or (ref.low or 0) < 1:
            raise _fail(path, f"{where}.per_layer", "must name an earlier int parameter >= 1")
        if not p.into:
            raise _fail(path, f"{where}.into", "per_layer needs the list key to fill")
    elif p.into is not None:
        raise _fail(path, f"{where}.into", "only valid with per_layer")
    return p


def _params(path: str, key: str, raw: Any, seen: dict[str, Param]) -> list[Param]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise _fail(path, key, "must be a mapping of parameter name: distribution")
    out = []
    for name, spec in raw.items():
        p = _param(path, key, str(name), spec, seen)
        seen[p.name] = p
        out.append(p)
    return out


def load_space(path: str | Path) -> SearchSpace:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"search space '{p}' does not exist; see search_spaces/ for examples")
    try:
        raw = yaml_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"search space '{p}' is not valid YAML{line}; fix the syntax") from None
    where = str(p)
    if not isinstance(raw, dict):
        raise UserError(f"search space '{p}' must be a mapping (budget, common, methods, ...)")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise _fail(where, sorted(unknown)[0], "unknown key; valid: " + ", ".join(sorted(TOP_KEYS)))
    budget = _budget(where, "budget", raw.get("budget"))
    smoke = _budget(where, "smoke", raw.get("smoke"))
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise _fail(where, "fixed", "must be a mapping of config overrides")
    common_seen: dict[str, Param] = {}
    common = _params(where, "common", raw.get("common"), common_seen)
    methods_raw = raw.get("methods") or {}
    if not isinstance(methods_raw, dict):
        raise _fail(where, "methods", "must be a mapping of method name: parameters")
    from dnet_tune.method.methods import METHODS

    methods = {}
    for name, params in methods_raw.items():
        if name not in METHODS:
            raise _fail(where, f"methods.{name}", "unknown method; choose one of: "
                        + ", ".join(METHODS.names()))
        methods[name] = _params(where, f"methods.{name}", params, dict(common_seen))
    return SearchSpace(where, budget, smoke, fixed, common, methods)


def check_against_config(space: SearchSpace, base: dict[str, Any], method: str,
                         samples: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """Sample `samples` configs with a seeded TPE sampler and build each strictly.

    Catches a parameter name that is no config key, or a value of the wrong type, at load time
    rather than inside a trial on a remote node.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="maximize")
    fn = space.define_by_run(method)
    configs = []
    for i in range(samples):
        trial = study.ask()
        constants = fn(trial)
        flat = {**trial.params, **constants}
        nested = apply_flat(merge(base, space.fixed), flat, space.virtual_names(method))
        try:
            config_from_dict(nested)
        except UserError as exc:
            raise UserError(f"search space '{space.path}': {exc}") from None
        configs.append(flat)
        study.tell(trial, float(math.sin(i)))  # any value: only validity is being checked
    return configs
