"""Sampling a space: the Optuna define-by-run function and flat trial configs -> core configs.

Define-by-run is what lets the conditional structure exist at all (a DN width per layer, a meta
interval only for full meta-gradients); a fixed dict space cannot express it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dnet_tune.config import config_from_dict
from dnet_tune.dotted import merge, unflatten
from dnet_tune.errors import UserError
from dnet_tune.tune.space import Param, SearchSpace

METHOD_KEY = "method.name"  # the flat config key a trial's method travels under


def define_by_run(space: SearchSpace, method: str) -> DefineByRun:
    return DefineByRun(space.params_for(method))


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


def sampled_config_keys(flat: dict[str, Any], virtual: set[str] | frozenset[str]
                        ) -> dict[str, Any]:
    """The config keys of a flat trial config: without the structural names that only steer
    sampling (virtual params and the per-layer samples `name_0`, `name_1`, ...)."""
    out = {}
    for key, value in flat.items():
        stem, _, index = key.rpartition("_")
        if key in virtual or (index.isdigit() and stem in virtual):
            continue
        out[key] = value
    return out


def apply_flat(base: dict[str, Any], flat: dict[str, Any], virtual: set[str] | frozenset[str]
               ) -> dict[str, Any]:
    """Flat trial config (Optuna names + assembled constants) merged over `base` as nested keys."""
    return merge(base, unflatten(sampled_config_keys(flat, virtual)))


_MISSING = object()


def check_against_config(space: SearchSpace, base: dict[str, Any], method: str,
                         samples: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """Sample `samples` configs with a seeded TPE sampler and build each strictly.

    Catches a parameter name that is no config key, or a value of the wrong type, at load time
    rather than inside a trial on a remote node.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="maximize")
    fn = define_by_run(space, method)
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
