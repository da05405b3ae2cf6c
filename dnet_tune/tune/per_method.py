"""Several methods in one Tuner, each with its own TPE study and its own ASHA rungs.

The methods share the cluster (their trials interleave, so none waits for another to finish) but
never each other's statistics: a Difficulty-Net trial is compared by ASHA only with Difficulty-Net
trials at the same rung, so cheap baselines that look good early cannot stop it (or the other way
round), and each method's TPE models only its own trials. Every method gets exactly the same
number of trials.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

METHOD_KEY = "method.name"  # the flat config key a trial's method travels under


class PerMethodSearcher(Searcher):
    """Round-robin over one sub-searcher per method, `quota` trials each."""

    def __init__(self, searchers: Mapping[str, Searcher], quota: int, metric: str,
                 mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.searchers = dict(searchers)
        self.quota = quota
        self.suggested = dict.fromkeys(searchers, 0)
        self.owner: dict[str, str] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        # the method with the fewest trials so far goes next: the methods interleave
        order = sorted((self.suggested[m], i, m) for i, m in enumerate(self.searchers))
        for _, _, method in order:
            if self.suggested[method] >= self.quota:
                continue
            config = self.searchers[method].suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                continue
            self.suggested[method] += 1
            self.owner[trial_id] = method
            return {**config, METHOD_KEY: method}
        if all(n >= self.quota for n in self.suggested.values()):
            return Searcher.FINISHED  # type: ignore[return-value]  # Ray's sentinel string
        return None

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class PerMethodScheduler(FIFOScheduler):
    """One scheduler (ASHA) per method; trials run first-come first-served across methods."""

    def __init__(self, make: Callable[[], TrialScheduler], methods: list[str]) -> None:
        super().__init__()
        self.schedulers = {m: make() for m in methods}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        self._metric = metric
        return all(s.set_search_properties(metric, mode, **spec)
                   for s in self.schedulers.values())

    def _of(self, trial: Any) -> TrialScheduler:
        return self.schedulers[trial.config[METHOD_KEY]]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        decision: str = self._of(trial).on_trial_result(tune_controller, trial, result)
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any,
                          result: dict[str, Any]) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{m}: {s.debug_string()}" for m, s in self.schedulers.items())
