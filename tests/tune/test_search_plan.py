"""What `plan_search` hands the engine: each method's own base config, one trial length, and a
`TunerSpec` that can only be built by name."""

from __future__ import annotations

import pytest

from dnet_tune.config import config_from_dict
from dnet_tune.dotted import merge
from dnet_tune.errors import UserError
from dnet_tune.tune.checked_search import plan_search, run_length
from dnet_tune.tune.per_method import METHOD_KEY
from dnet_tune.tune.plan import SearchRequest, run_epochs
from dnet_tune.tune.runner import TunerSpec
from dnet_tune.tune.sampling import apply_flat
from dnet_tune.tune.trainable import TrialSetup

METHODS = ["difficulty_net", "ce", "cdb_ce"]


@pytest.fixture(scope="module")
def plan():
    return plan_search(SearchRequest(methods=METHODS, smoke=True, max_epochs=3))


def test_each_method_gets_its_own_base_config(plan):
    assert list(plan.bases) == METHODS
    for method, base in plan.bases.items():
        assert base["method"]["name"] == method
        assert base["train"]["epochs"] == 3
    assert plan.epochs == run_epochs(plan.bases["ce"]) == 3


def test_a_trial_is_resolved_over_its_own_method_s_base(plan):
    """The base is chosen by the trial's method, not whichever base came last: a value that
    differs between methods' bases reaches each method's trials (`method.name` is in the flat
    config either way, so it alone could not tell)."""
    bases = {m: merge(b, {"optim": {"lr": 0.01 * (i + 1)}})
             for i, (m, b) in enumerate(plan.bases.items())}
    setup = TrialSetup(bases, frozenset())
    for i, method in enumerate(METHODS):
        flat = {METHOD_KEY: method}
        cfg = config_from_dict(apply_flat(setup.base_for(flat), flat, setup.virtual))
        assert cfg.method.name == method
        assert cfg.optim.lr == pytest.approx(0.01 * (i + 1))


def test_one_length_for_every_method(plan):
    assert run_length(plan.bases) == plan.epochs
    longer = {**plan.bases, "ce": merge(plan.bases["ce"], {"train": {"epochs": 5}})}
    with pytest.raises(UserError, match=r"different numbers of epochs \(difficulty_net 3, "
                                        r"ce 5, cdb_ce 3\)"):
        run_length(longer)


def test_a_tuner_spec_is_built_by_name(plan):
    with pytest.raises(TypeError):
        TunerSpec(plan.space, plan.methods, 0, plan.budget)  # type: ignore[misc]
