"""Strict config: unknown keys and wrong types are rejected with the dotted key named."""

import pytest

from dnet_tune.config import Config, config_from_dict, config_to_dict, parse_set
from dnet_tune.errors import UserError
from dnet_tune.run import resolve_config
from dnet_tune.yamlio import dump_yaml


def test_round_trip_through_yaml(tmp_path):
    cfg = resolve_config(dataset="cifar10_lt", sets=["method.lam=1.0", "dn.hidden=[64, 32]"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(config_to_dict(cfg)))
    assert resolve_config(config_path=str(path)) == cfg
    assert cfg.method.lam == 1.0 and cfg.dn.hidden == [64, 32]
    assert cfg.model.name == "resnet32"  # from the dataset recipe


def test_precedence_defaults_recipe_yaml_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: digits_lt}\noptim: {lr: 0.5}\ndn: {lr: 0.2}\n")
    cfg = resolve_config(config_path=str(path), sets=["dn.lr=1e-4"])
    assert cfg.optim.lr == 0.5  # YAML beats the recipe
    assert cfg.dn.lr == pytest.approx(1e-4)  # --set beats YAML


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"method": {"lamda": 1.0}}, "method.lamda"),
        ({"optimizer": {}}, "optimizer"),
        ({"dn": {"hidden": "wide"}}, "dn.hidden"),
        ({"dn": {"hidden": [64, "x"]}}, "dn.hidden[1]"),
        ({"train": {"epochs": 2.5}}, "train.epochs"),
        ({"dn": {"bias": "yes"}}, "dn.bias"),
        ({"method": {"meta_grad": "partial"}}, "method.meta_grad"),
        ({"optim": {"lr": -1.0}}, "optim.lr"),
        ({"method": {"cdb_tau": "fast"}}, "method.cdb_tau"),
        ({"method": {"meta_impl": "fast"}}, "method.meta_impl"),
        ({"train": {"precision": "fp16"}}, "train.precision"),
        ({"train": {"deterministic": "yes"}}, "train.deterministic"),
        ({"train": {"test_eval": "never"}}, "train.test_eval"),
        ({"model": {"pretrained": 3}}, "model.pretrained"),
        ({"model": {"pretrained": " "}}, "model.pretrained"),
        ({"model": {"reinit": "layer4.2"}}, "model.reinit"),
        ({"model": {"reinit": [""]}}, "model.reinit"),
    ],
)
def test_bad_keys_and_types_name_the_key(data, key):
    with pytest.raises(UserError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(data)


def test_int_accepted_where_float_expected_and_tau_number_or_dynamic():
    cfg = config_from_dict({"optim": {"lr": 1}, "method": {"cdb_tau": "dynamic"}})
    assert isinstance(cfg.optim.lr, float)
    assert config_from_dict({"method": {"cdb_tau": 2}}).method.cdb_tau == 2.0


def test_parse_set_nests_and_parses_yaml_values():
    assert parse_set(["a.b=1", "a.c=[1, 2]", "d=text"]) == {"a": {"b": 1, "c": [1, 2]},
                                                            "d": "text"}
    with pytest.raises(UserError, match=r"key\.sub=value"):
        parse_set(["novalue"])


def test_defaults_are_valid():
    assert config_from_dict(config_to_dict(Config())) == Config()


@pytest.mark.parametrize("value", [True, False, "auto"])
def test_deterministic_true_false_and_auto_round_trip_through_yaml(tmp_path, value):
    cfg = resolve_config(dataset="digits_lt", overrides={"train": {"deterministic": value}})
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(config_to_dict(cfg)))
    back = resolve_config(config_path=str(path))
    assert back.train.deterministic == value and type(back.train.deterministic) is type(value)
    assert resolve_config(dataset="digits_lt", sets=[f"train.deterministic={str(value).lower()}"]
                          ).train.deterministic == value


def test_model_pretrained_and_reinit_are_typed_keys_that_round_trip(tmp_path):
    cfg = resolve_config(dataset="digits_lt", sets=["model.pretrained=~/w/small.pt",
                                                    "model.reinit=[features.3]"])
    assert (cfg.model.pretrained, cfg.model.reinit) == ("~/w/small.pt", ["features.3"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(config_to_dict(cfg)))
    assert resolve_config(config_path=str(path)) == cfg
    assert Config().model.pretrained is None and Config().model.reinit == []
