"""The Optuna sampler each `--sampler` choice builds, with every setting explicit and recorded.

Why explicit: Optuna's own TPE defaults are not stable across the versions this package accepts
(`optuna>=4.0`). Optuna 5.0 turned on multivariate TPE and the constant liar by default for
single-objective studies; under 4.x `TPESampler(seed=...)` models every parameter on its own and
proposes parallel trials blind. A search therefore resolves its choice into keyword arguments
once (`settings`), builds the sampler from exactly those (`build`) and writes them to
search.json (`record`), so what ran is on file whatever Optuna is installed.

A resumed search resolves nothing again: Ray's searcher snapshot holds the very sampler objects
the search started with (and their random state), and search.json keeps its record;
`in_use` reads the restored samplers' settings back for the resume's entry in search.json.

The choices (`plan.SAMPLERS`), compared by bench/search_efficiency.py (docs/benchmarks.md,
"Search efficiency"; 10 seeds on digits_lt with a 500-image V):
- `tpe`, the default: multivariate TPE with the constant liar (parallel trials see each other
  as running) after 10 random trials: Optuna 5's defaults (`TPE`), written out so that Optuna 4
  runs them too. It was the best or tied in the benchmark's paired comparisons;
- `tpe-mv`: `tpe` over the group-decomposed space with a random start scaled to the budget and
  the parallelism (`startup_trials`); measured worse than `tpe` (best val lower in 6 of 10
  seeds, tied in 4, never higher; paired mean -0.0034, 95% CI [-0.0066, -0.0002]), so it is
  not the default;
- `tpe-independent`: the settings Optuna 4.x ran by default (independent TPE, no constant liar,
  10 random trials first), kept selectable so a benchmark can compare against them;
- `random`: Optuna's RandomSampler (the baseline of bench/search_efficiency.py).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from dnet_tune.tune import ray_internals

# every TPESampler keyword a search sets (besides `seed`), in the order search.json shows them
TPE_KEYS = ("n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar")

# `tpe`: Optuna 5's TPESampler defaults for a single-objective study, written out (see above)
TPE = {"n_startup_trials": 10, "n_ei_candidates": 24, "multivariate": True, "group": False,
       "constant_liar": True}

# Optuna 4.x's defaults: what `TPESampler(seed=...)` ran before Optuna 5.0 changed them
OPTUNA4_TPE = {"n_startup_trials": 10, "n_ei_candidates": 24, "multivariate": False,
               "group": False, "constant_liar": False}


def startup_trials(trials: int, slots_per_method: int) -> int:
    """How many of a method's trials `tpe-mv` proposes at random before TPE models them.

    Measured against Optuna's fixed 10 (`tpe`) at the default budget (16 trials on one slot,
    so 4 random here) by bench/search_efficiency.py: no better over 10 seeds, so `tpe` keeps
    10 and this rule serves `tpe-mv` alone. (Not measured: many parallel slots, where it
    starts TPE earliest.)

    The idea: about a quarter of the per-method budget random (Optuna's fixed 10 makes 10 of
    the default 16 trials random), at least 2 (TPE needs something to split) and at most
    Optuna's 10. Parallel slots add random proposals of their own: the first `slots` trials
    of a method start before any has a result, and Optuna counts only finished trials, so until
    the n-th finishes the n - 1 + slots proposals made so far are all random. The slots beyond
    the first are therefore taken off the quarter.
    """
    blind = max(0, slots_per_method - 1)
    return max(2, min(10, trials // 4 - blind))


def slots_per_method(slots: int, methods: int, trials: int) -> int:
    """How many trials of one method run at once: the methods take turns for the slots
    (`per_method.PerMethodSearcher`), so about slots / methods, and never more than its trials."""
    return max(1, min(trials, math.ceil(slots / max(1, methods))))


def settings(name: str, seed: int, trials: int, slots: int, methods: int) -> dict[str, Any]:
    """Every keyword argument the sampler `name` is built with (plan.SAMPLERS)."""
    if name == "random":
        return {"seed": seed}
    if name == "tpe":
        return {"seed": seed, **TPE}
    if name == "tpe-independent":
        return {"seed": seed, **OPTUNA4_TPE}
    if name == "tpe-mv":
        return {"seed": seed,
                "n_startup_trials": startup_trials(trials,
                                                   slots_per_method(slots, methods, trials)),
                "n_ei_candidates": 24, "multivariate": True, "group": True,
                "constant_liar": True}
    raise ValueError(f"unknown sampler '{name}'")  # plan.check_arguments refused it before


def build(name: str, kwargs: dict[str, Any]) -> Any:
    """The Optuna sampler, from exactly `kwargs`. Optuna marks `group` (and, in 4.x,
    `multivariate` and `constant_liar`) experimental and warns once per sampler; they were asked
    for by name here, so that warning is not printed into the search's output."""
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(**kwargs)


def record(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """search.json's `sampler`: the choice, the Optuna class and every keyword it was built
    with."""
    return {"name": name, "class": "RandomSampler" if name == "random" else "TPESampler",
            "settings": dict(kwargs)}


def in_use(searchers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method, the class and settings (`TPE_KEYS`; not the seed, which Optuna does not
    keep) of the sampler its OptunaSearch proposes with: after a resume, the restored ones."""
    out = {}
    for method, searcher in searchers.items():
        study = ray_internals.optuna_study(searcher)
        if study is not None:
            out[method] = ray_internals.sampler_settings(study.sampler)
    return out
