"""Search spaces, the model: parameters per method, budgets, fixed overrides, pinning.

`space_file` reads and validates `search_spaces/<dataset>.yaml` into this model; `sampling` turns
it into an Optuna define-by-run function and trial configs.

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

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dnet_tune.tune.plan import Budget


def bundled_spaces_dir() -> Path:
    """`search_spaces/` of a checkout, else the copy a wheel ships as `dnet_tune/search_spaces`."""
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "search_spaces"
    return checkout if checkout.is_dir() else here.parents[1] / "search_spaces"


def default_space_path(dataset: str) -> Path:
    return bundled_spaces_dir() / f"{dataset}.yaml"



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

    def distribution(self) -> Any:
        """Optuna's own distribution object; building it is what validates the range."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.type == "categorical":
            return CategoricalDistribution(self.choices)
        if self.type == "int":
            return IntDistribution(int(self.low or 0), int(self.high or 0), log=self.log,
                                   step=int(self.step or 1))
        return FloatDistribution(float(self.low or 0.0), float(self.high or 0.0), log=self.log,
                                 step=self.step)

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
    # tuned beside Difficulty-Net by default, with the same budget
    baselines: list[str] = field(default_factory=list)

    def params_for(self, method: str) -> list[Param]:
        return self.common + self.methods.get(method, [])

    def distributions(self, method: str) -> dict[str, Any]:
        """Optuna name -> distribution, per-layer parameters expanded as the sampler names
        them (`dn.width_0`, ...): what an Optuna study of this method's trials holds."""
        params = self.params_for(method)
        out: dict[str, Any] = {}
        for p in params:
            if p.per_layer:
                steer = next((q for q in params if q.name == p.per_layer), None)
                layers = int(steer.high or 1) if steer is not None else 1
                out.update({f"{p.name}_{i}": p.distribution() for i in range(layers)})
            else:
                out[p.name] = p.distribution()
        return out

    def virtual_names(self, method: str) -> set[str]:
        names = set()
        for p in self.params_for(method):
            if p.virtual:
                names.add(p.name)
            if p.per_layer:
                names.add(p.name)
        return names

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
        pinned = replace(self, common=common, methods=methods)
        return pinned, sorted(set(removed))
