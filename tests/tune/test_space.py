"""Search spaces: every bundled file yields valid configs; broken files fail naming the key."""

from __future__ import annotations

import pytest
import yaml

from dnet_tune.config import config_from_dict
from dnet_tune.data.registry import DATASETS
from dnet_tune.errors import UserError
from dnet_tune.method.methods import METHODS
from dnet_tune.tune.checked_search import base_config
from dnet_tune.tune.plan import SearchRequest, budget_for
from dnet_tune.tune.sampling import apply_flat, check_against_config
from dnet_tune.tune.space import default_space_path
from dnet_tune.tune.space_file import load_space

SAMPLES = 50


def _request(dataset: str) -> SearchRequest:
    """A search of `dataset` as a user would start it: with the weights file its recipe needs
    (Places-LT's pretrained ResNet-152; only named, never read while sampling)."""
    needs = DATASETS.entry(dataset).info.get("needs_pretrained")
    return SearchRequest(dataset=dataset,
                         sets=["model.pretrained=/weights/resnet152.pth"] if needs else [])


@pytest.mark.parametrize("dataset", DATASETS.names())
def test_every_dataset_has_a_space_covering_every_method(dataset):
    space = load_space(default_space_path(dataset))
    assert sorted(space.methods) == sorted(METHODS.names())
    assert space.smoke.trials <= space.budget.trials
    assert space.smoke.max_epochs <= space.budget.max_epochs


@pytest.mark.parametrize("method", METHODS.names())
@pytest.mark.parametrize("dataset", DATASETS.names())
def test_bundled_space_yields_valid_configs(dataset, method):
    space = load_space(default_space_path(dataset))
    req = _request(dataset)
    base = base_config(req, space, budget_for(req, space), method)
    flats = check_against_config(space, base, method, samples=SAMPLES, seed=1)
    assert len(flats) == SAMPLES
    virtual = space.virtual_names(method)
    for flat in flats:
        cfg = config_from_dict(apply_flat(base, flat, virtual))
        assert cfg.method.name == method
        assert cfg.data.name == dataset
        for p in space.params_for(method):
            if p.virtual or p.per_layer or p.name not in flat:
                continue
            section, key = p.name.split(".")
            value = getattr(getattr(cfg, section), key)
            assert value == flat[p.name]
            if p.type != "categorical":
                assert p.low is not None and p.high is not None
                assert p.low <= value <= p.high


def test_difficulty_net_structure_is_conditional():
    """DN depth decides how many widths exist; meta_interval only exists for full meta-grad."""
    space = load_space(default_space_path("digits_lt"))
    req = SearchRequest(dataset="digits_lt")
    base = base_config(req, space, budget_for(req, space), "difficulty_net")
    flats = check_against_config(space, base, "difficulty_net", samples=SAMPLES, seed=3)
    depths, grads = set(), set()
    for flat in flats:
        depth = flat["dn.depth"]
        depths.add(depth)
        assert len(flat["dn.hidden"]) == depth
        assert [flat[f"dn.width_{i}"] for i in range(depth)] == flat["dn.hidden"]
        assert all(64 <= w <= 1024 for w in flat["dn.hidden"])
        grads.add(flat["method.meta_grad"])
        assert ("method.meta_interval" in flat) == (flat["method.meta_grad"] == "full")
        cfg = config_from_dict(apply_flat(base, flat, space.virtual_names("difficulty_net")))
        assert cfg.dn.hidden == flat["dn.hidden"]
        if flat["method.meta_grad"] == "detached":
            assert cfg.method.meta_interval == base["method"]["meta_interval"]
    assert depths == {1, 2, 3}
    assert grads == {"full", "detached"}


def test_sampling_is_seeded():
    space = load_space(default_space_path("digits_lt"))
    req = SearchRequest(dataset="digits_lt")
    base = base_config(req, space, budget_for(req, space), "difficulty_net")
    a = check_against_config(space, base, "difficulty_net", samples=5, seed=7)
    b = check_against_config(space, base, "difficulty_net", samples=5, seed=7)
    c = check_against_config(space, base, "difficulty_net", samples=5, seed=8)
    assert a == b
    assert a != c


VALID = {
    "budget": {"trials": 4, "max_epochs": 4, "grace_period": 1, "reduction_factor": 2},
    "smoke": {"trials": 2, "max_epochs": 2, "grace_period": 1, "reduction_factor": 2},
    "common": {"optim.lr": {"type": "float", "low": 0.01, "high": 0.2, "log": True}},
    "methods": {"difficulty_net": {
        "dn.depth": {"type": "int", "low": 1, "high": 2, "virtual": True},
        "dn.width": {"type": "int", "low": 8, "high": 64, "per_layer": "dn.depth",
                     "into": "dn.hidden"},
        "method.meta_grad": {"type": "categorical", "choices": ["full", "detached"]},
        "method.meta_interval": {"type": "categorical", "choices": [1, 2],
                                 "when": {"method.meta_grad": "full"}},
    }},
}


def _write(tmp_path, data):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _mutate(path_keys, value):
    import copy

    data = copy.deepcopy(VALID)
    node = data
    for k in path_keys[:-1]:
        node = node[k]
    if value is _DELETE:
        del node[path_keys[-1]]
    else:
        node[path_keys[-1]] = value
    return data


_DELETE = object()
DN = ("methods", "difficulty_net")


def test_valid_space_loads(tmp_path):
    space = load_space(_write(tmp_path, VALID))
    assert [p.name for p in space.params_for("difficulty_net")][:2] == ["optim.lr", "dn.depth"]
    assert space.budget.trials == 4


@pytest.mark.parametrize(
    ("keys", "value", "needles"),
    [
        (("budgt",), {}, ["budgt", "unknown key"]),
        (("budget", "trials"), 0, ["budget.trials", ">= 1"]),
        (("budget", "grace_period"), 9, ["budget.grace_period", "max_epochs"]),
        (("smoke",), _DELETE, ["smoke"]),
        (("common", "optim.lr", "hgh"), 1, ["common.optim.lr.hgh", "unknown key"]),
        (("common", "optim.lr", "low"), 0.5, ["common.optim.lr", "inverted"]),
        (("common", "optim.lr", "high"), 0.01, ["common.optim.lr", "inverted"]),
        (("common", "optim.lr", "low"), 0.0, ["common.optim.lr.low", "log range"]),
        (("common", "optim.lr", "low"), "small", ["common.optim.lr.low", "number"]),
        (("common", "optim.lr", "type"), "uniform", ["common.optim.lr.type"]),
        ((*DN, "method.meta_grad", "choices"), [], ["methods.difficulty_net.method.meta_grad",
                                                    "non-empty"]),
        ((*DN, "method.meta_interval", "when"), {"method.nope": 1},
         ["method.meta_interval.when.method.nope", "earlier parameter"]),
        ((*DN, "dn.width", "per_layer"), "dn.missing", ["dn.width.per_layer"]),
        (("methods", "magic"), {}, ["methods.magic", "unknown method"]),
    ],
)
def test_invalid_space_names_the_key(tmp_path, keys, value, needles):
    with pytest.raises(UserError) as info:
        load_space(_write(tmp_path, _mutate(keys, value)))
    msg = str(info.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_parameter_that_is_no_config_key_is_caught_at_load(tmp_path):
    data = _mutate((*DN, "dn.lrr"), {"type": "float", "low": 1e-4, "high": 1e-2, "log": True})
    space = load_space(_write(tmp_path, data))
    req = SearchRequest(dataset="digits_lt")
    base = base_config(req, space, budget_for(req, space), "difficulty_net")
    with pytest.raises(UserError, match=r"dn\.lrr"):
        check_against_config(space, base, "difficulty_net")


def test_wrong_value_type_is_caught_at_load(tmp_path):
    data = _mutate((*DN, "method.meta_grad", "choices"), ["full", "sideways"])
    space = load_space(_write(tmp_path, data))
    req = SearchRequest(dataset="digits_lt")
    base = base_config(req, space, budget_for(req, space), "difficulty_net")
    with pytest.raises(UserError, match=r"method\.meta_grad"):
        check_against_config(space, base, "difficulty_net", samples=20)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_space(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget: {trials: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_space(bad)


def _names(space, method="difficulty_net"):
    return [p.name for p in space.params_for(method)]


def test_set_pins_a_parameter_out_of_the_space():
    space = load_space(default_space_path("digits_lt"))
    pinned, removed = space.pin({"optim.lr": 0.05, "method.lam": 0.3})
    assert removed == ["method.lam", "optim.lr"]
    assert "optim.lr" not in _names(pinned) and "method.lam" not in _names(pinned)
    assert "optim.lr" in _names(space)  # the original is untouched
    req = SearchRequest(dataset="digits_lt", sets=["optim.lr=0.05", "method.lam=0.3"])
    base = base_config(req, pinned, budget_for(req, pinned), "difficulty_net")
    for flat in check_against_config(pinned, base, "difficulty_net", samples=10):
        cfg = config_from_dict(apply_flat(base, flat, pinned.virtual_names("difficulty_net")))
        assert cfg.optim.lr == 0.05 and cfg.method.lam == 0.3


def test_pinning_resolves_conditions_and_structure():
    space = load_space(default_space_path("digits_lt"))
    full, _ = space.pin({"method.meta_grad": "full"})
    interval = next(p for p in full.params_for("difficulty_net")
                    if p.name == "method.meta_interval")
    assert interval.when == {}
    detached, removed = space.pin({"method.meta_grad": "detached"})
    assert "method.meta_interval" in removed
    assert "method.meta_interval" not in _names(detached)
    fixed_dn, removed = space.pin({"dn.hidden": [32, 32]})
    assert {"dn.width", "dn.depth"} <= set(removed)  # depth steered only the widths
    assert not fixed_dn.virtual_names("difficulty_net")


@pytest.mark.parametrize("dataset", ["cifar10_lt", "cifar100_lt"])
def test_two_stage_cifar_space_searches_stage2_with_stage2_on(dataset):
    from pathlib import Path

    path = Path(default_space_path(dataset)).parent / "cifar_lt_two_stage.yaml"
    space = load_space(path)
    assert sorted(space.methods) == sorted(METHODS.names())
    req = SearchRequest(dataset=dataset, space=str(path))
    for method in ("difficulty_net", "ce"):
        base = base_config(req, space, budget_for(req, space), method)
        flats = check_against_config(space, base, method, samples=10, seed=2)
        cfgs = [config_from_dict(apply_flat(base, f, space.virtual_names(method))) for f in flats]
        assert all(c.stage2.enabled and c.stage2.epochs == 10 for c in cfgs)
        assert len({c.stage2.lr for c in cfgs}) == 10  # searched, not fixed
        assert all(0.01 <= c.stage2.lr <= 0.2 and 0 <= c.stage2.smoothing_head <= 0.5
                   for c in cfgs)


def test_default_spaces_leave_stage2_off():
    """`make demo` (digits) and the default CIFAR searches keep their cost: no stage 2."""
    for dataset in DATASETS.names():
        space = load_space(default_space_path(dataset))
        req = _request(dataset)
        base = base_config(req, space, budget_for(req, space), "difficulty_net")
        assert base["stage2"]["enabled"] is False
        assert not any(p.name.startswith("stage2.") for p in space.params_for("difficulty_net"))
