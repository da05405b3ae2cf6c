"""Reading a search-space file: YAML -> a validated `SearchSpace`, every error naming its key.

A space file is edited by hand and read on a laptop before a search spends cluster time, so every
mistake (an unknown key, an empty range, a condition on a later parameter, a method that does not
exist) is one `UserError` naming the dotted key, at load time. Ranges are validated by Optuna's own
distribution classes, so what loads here is exactly what the sampler accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnet_tune.errors import UserError
from dnet_tune.tune.plan import Budget
from dnet_tune.tune.space import Param, SearchSpace
from dnet_tune.yamlio import read_yaml

PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "when", "virtual", "per_layer",
              "into"}
BUDGET_KEYS = {"trials", "max_epochs", "grace_period", "reduction_factor"}
TOP_KEYS = {"budget", "smoke", "fixed", "common", "methods", "baselines", "description"}


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


def _construction_key(path: str, where: str, name: Any) -> None:
    """A search builds its dataset once, from the base config, and every trial trains on that
    copy: a sampled key that changes the splits would label trials with data they never saw."""
    from dnet_tune.data.registry import CONSTRUCTION_KEYS

    if isinstance(name, str) and name in {f"data.{k}" for k in CONSTRUCTION_KEYS}:
        raise _fail(path, where, f"{name} decides the dataset's splits, which every trial "
                                 f"shares (built once before the search), so it cannot be "
                                 f"sampled; fix it under `fixed:` or with --set")


def _param(path: str, key: str, name: str, raw: Any, seen: dict[str, Param]) -> Param:
    where = f"{key}.{name}"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be a mapping with a 'type'")
    _construction_key(path, where, name)
    _construction_key(path, where, raw.get("into"))
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
        if "step" in raw:
            p.step = _number(path, f"{where}.step", raw["step"])
        if p.low == p.high:
            raise _fail(path, where, f"empty or inverted range: low = high = {raw['low']}; "
                                     f"put one value under `fixed:` instead")
    try:
        p.distribution()
    except ValueError as exc:  # Optuna's verdict on the range, log and step
        text = str(exc)
        if "log" in text and p.log and (p.low or 0) <= 0:
            raise _fail(path, f"{where}.low", f"log range needs low > 0 ({text})") from None
        if "step" in text:
            raise _fail(path, f"{where}.step", text) from None
        raise _fail(path, where, f"inverted range: low {raw.get('low')} must be <= high "
                                 f"{raw.get('high')} ({text})") from None
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
    raw = read_yaml(p, "search space", "see search_spaces/ for examples")
    where = str(p)
    if not isinstance(raw, dict):
        raise UserError(f"search space '{p}' must be a mapping (budget, common, methods, ...)")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise _fail(where, sorted(unknown)[0],
                    "unknown key; valid: " + ", ".join(sorted(TOP_KEYS)))
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
    baselines = raw.get("baselines") or []
    if not isinstance(baselines, list) or not all(isinstance(b, str) for b in baselines):
        raise _fail(where, "baselines", "must be a list of method names")
    for b in baselines:
        if b not in methods:
            raise _fail(where, f"baselines.{b}", "must be a method listed under `methods:`")
    return SearchSpace(where, budget, smoke, fixed, common, methods, baselines)
