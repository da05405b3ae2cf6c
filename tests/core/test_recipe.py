"""Recipes: `--recipe paper` is the spec's CIFAR-LT setting, validated and layered in order."""

from __future__ import annotations

import pytest

from dnet_tune.errors import UserError
from dnet_tune.recipe import list_recipes, recipe_names
from dnet_tune.run import resolve_config
from dnet_tune.schedule import milestone_epochs
from dnet_tune.stage2 import resolve_smoothing


def paper(**kwargs: object):
    overrides = {"data": {"imbalance": 100.0}}  # as --imbalance 100
    return resolve_config(dataset="cifar100_lt", recipe="paper", overrides=overrides, **kwargs)


def test_paper_recipe_resolves_to_the_spec_values():
    cfg = paper()
    d, m, dn, o, s = cfg.data, cfg.method, cfg.dn, cfg.optim, cfg.stage2
    # §5: the authors' counts, H = 25 per class, no V
    assert (d.name, d.profile, d.meta_per_class, d.val_per_class) == ("cifar100_lt", "paper",
                                                                      25, 0)
    assert d.imbalance == 100.0
    # §6 CIFAR column: ResNet-32, AutoAugment + Cutout, batch 128, SGD 0.1 / 0.9 / 1e-4
    assert cfg.model.name == "resnet32"
    assert (d.augment, d.cutout_size, d.batch_size, d.meta_batch_size) == (
        "autoaugment_cutout", 16, 128, 100)
    assert (o.lr, o.momentum, o.weight_decay, o.nesterov) == (0.1, 0.9, 1e-4, False)
    # the standard CIFAR-LT schedule: 200 epochs, 5 warm-up, ×0.01 at 160 and 180
    assert cfg.train.epochs == 200
    assert (o.schedule, o.warmup_epochs, o.milestone_fractions, o.gamma) == ("step", 5,
                                                                             [0.8, 0.9], 0.01)
    assert milestone_epochs(o.milestone_fractions, cfg.train.epochs) == [160, 180]
    # Difficulty-Net: h = 128 without bias, Adam 1e-5 / 1e-4, λ 0.3, the released code's mode
    assert (m.name, m.base_loss, m.lam, m.driver_target) == ("difficulty_net", "ce", 0.3,
                                                            "relative")
    assert m.meta_grad == "detached" and m.acc_refresh == "after_epoch"
    assert (dn.hidden, dn.bias, dn.lr, dn.weight_decay) == ([128, 128], False, 1e-5, 1e-4)
    # stage 2: 50 epochs, cosine from 0.05, head retrained, balanced, IF 100 → 0.4 / 0.1
    assert (s.enabled, s.epochs, s.lr, s.momentum, s.weight_decay) == (True, 50, 0.05, 0.9,
                                                                       1e-4)
    assert (s.retrain_head, s.samples_per_visit, s.smoothing_shape) == (True, 4, "concave")
    assert s.augment is None and s.batch_size == 128
    assert s.init == "best_val"  # the authors start from their selected stage-1 checkpoint
    assert resolve_smoothing(cfg) == (0.4, 0.1)


def test_recipe_precedence_dataset_recipe_recipe_config_set_flags(tmp_path):
    assert resolve_config(dataset="cifar100_lt").method.meta_grad == "full"  # below the recipe
    own = tmp_path / "own.yaml"
    own.write_text("method: {meta_grad: full}\nstage2: {epochs: 7, lr: 0.2}\n")
    cfg = paper(config_path=str(own), sets=["stage2.lr=0.3", "train.epochs=9"])
    assert cfg.method.meta_grad == "full"  # --config beats the recipe
    assert cfg.stage2.epochs == 7
    assert cfg.stage2.lr == 0.3  # --set beats --config
    assert cfg.train.epochs == 9
    flagged = resolve_config(dataset="cifar100_lt", recipe="paper", sets=["train.epochs=9"],
                             overrides={"train": {"epochs": 11}})
    assert flagged.train.epochs == 11  # flags beat --set


def test_every_shipped_recipe_is_listed_and_valid():
    assert "paper" in recipe_names()
    assert all(desc for _, desc in list_recipes())


@pytest.mark.parametrize(("text", "needle"), [
    ("stage2: {enabeld: true}\n", "stage2.enabeld"),
    ("optim: {lr: fast}\n", "optim.lr"),
    ("recipe: {datasets: [cifar10_lt], author: me}\n", "recipe.author"),
    ("data: {name: cifar10_lt}\n", "data.name"),
    ("- a\n- b\n", "mapping"),
])
def test_a_recipe_file_is_validated_like_a_config(tmp_path, text, needle):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=needle.replace(".", r"\.")):
        resolve_config(dataset="digits_lt", recipe=str(path))


def test_a_recipe_refuses_a_dataset_it_is_not_written_for():
    with pytest.raises(UserError, match="cifar10_lt, cifar100_lt"):
        resolve_config(dataset="digits_lt", recipe="paper")


def test_unknown_recipe_is_a_one_line_error(cli, tmp_path, one_line_error):
    out = tmp_path / "run"
    code, _, err = cli("train", "--recipe", "papper", "--dataset", "cifar100_lt",
                       "--output", out)
    one_line_error(code, err, "unknown recipe 'papper'", "paper")
    assert not out.exists()


def test_places_resolves_to_the_paper_s_pretrained_resnet152_and_needs_its_file(cli,
                                                                                one_line_error,
                                                                                tmp_path):
    """Spec §6 Places-LT: ImageNet-pretrained ResNet-152 (its last block retrained from scratch,
    as the authors' code does), 30 epochs, lr 0.01, ×0.1 at 10 and 20; the weights file is the
    user's, so without it the run is refused in one line, before anything is written."""
    cfg = resolve_config(dataset="places_lt", sets=["model.pretrained=/weights/resnet152.pth"])
    m, o = cfg.model, cfg.optim
    assert (m.name, m.pretrained, m.reinit) == ("resnet152", "/weights/resnet152.pth",
                                                ["layer4.2"])
    assert cfg.train.epochs == 30
    assert (o.lr, o.schedule, o.gamma) == (0.01, "step", 0.1)
    assert milestone_epochs(o.milestone_fractions, cfg.train.epochs) == [10, 20]
    assert (cfg.dn.hidden, cfg.dn.bias, cfg.method.acc_refresh) == ([512, 512], True,
                                                                    "before_epoch")
    # the lists fix the counts (data.imbalance is not read): stage 2 takes the authors' values
    assert resolve_smoothing(cfg) == (0.4, 0.1)
    assert resolve_smoothing(resolve_config(dataset="imagenet_lt")) == (0.3, 0.0)
    with pytest.raises(UserError, match=r"places_lt with model resnet152 needs "
                                        r"model\.pretrained: .*resnet152-394f9c45\.pth"):
        resolve_config(dataset="places_lt")
    # a from-scratch backbone is an explicit choice, not the recipe
    assert resolve_config(dataset="places_lt", overrides={"model": {"name": "resnet50"}}
                          ).model.pretrained is None
    out = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "places_lt", "--data-dir", tmp_path, "--output",
                       out)
    one_line_error(code, err, "needs model.pretrained", "--set model.pretrained=PATH")
    assert not out.exists()
