"""The learning-rate schedule follows the run's length; older absolute milestones never silently
change meaning; an impossible schedule is one line naming its key."""

from __future__ import annotations

import itertools

import pytest
import yaml

from dnet_tune.config import config_from_dict, config_to_dict
from dnet_tune.errors import UserError
from dnet_tune.run import extended, resolve_config
from dnet_tune.schedule import lr_at


def decays(cfg) -> list[int]:
    """0-based epochs at which the stage-1 lr drops below the previous epoch's."""
    lrs = [lr_at(cfg, e) for e in range(cfg.train.epochs)]
    return [e for e in range(1, len(lrs)) if lrs[e] < lrs[e - 1] * 0.5]


@pytest.mark.parametrize(("epochs", "expected"), [(200, [160, 180]), (60, [48, 54]),
                                                  (20, [16, 18])])
def test_step_milestones_follow_the_run_length(epochs, expected):
    """`train --dataset cifar10_lt --epochs 60` used to keep [160, 180]: no decay at all."""
    cfg = resolve_config(dataset="cifar10_lt", overrides={"train": {"epochs": epochs}})
    assert decays(cfg) == expected
    assert lr_at(cfg, epochs - 1) == pytest.approx(0.1 * 0.01 ** 2)
    assert [lr_at(cfg, e) for e in range(5)] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])


def test_places_recipe_steps_at_a_third_and_two_thirds():
    weights = ["model.pretrained=/weights/resnet152.pth"]  # the recipe needs the user's file
    cfg = resolve_config(dataset="places_lt", sets=weights)
    assert decays(cfg) == [10, 20]
    longer = resolve_config(dataset="places_lt", sets=weights,
                            overrides={"train": {"epochs": 90}})
    assert decays(longer) == [30, 60]


def _old_export(tmp_path, milestones, epochs=60):
    """A config file written before fractions: absolute `optim.milestones`, no new keys."""
    data = config_to_dict(resolve_config(dataset="cifar10_lt",
                                         overrides={"train": {"epochs": epochs}}))
    del data["optim"]["milestone_fractions"]
    data["optim"]["milestones"] = milestones
    for key in ("threads", "extensions"):
        del data["train"][key]
    data["provenance"] = {"trial_id": "t0", "note": "ignored by train"}
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_older_export_is_migrated_with_a_note_and_keeps_its_shape_when_longer(tmp_path,
                                                                                 capsys):
    """`train --config best.yaml --epochs 200` of a 60-epoch CIFAR search decayed at 48 and 54,
    then trained 146 epochs at lr 1e-5."""
    path = _old_export(tmp_path, [48, 54])
    same = resolve_config(config_path=str(path))
    assert same.optim.milestone_fractions == [0.8, 0.9]
    assert decays(same) == [48, 54]  # the run it came from, exactly
    err = capsys.readouterr().err
    assert "optim.milestones [48, 54]" in err and "[0.8, 0.9]" in err and str(path) in err
    longer = resolve_config(config_path=str(path), overrides={"train": {"epochs": 200}})
    assert decays(longer) == [160, 180]


def test_milestones_an_older_run_never_reached_are_dropped_by_name(tmp_path, capsys):
    """Such a run (`--epochs 60` with the recipe's [160, 180]) never decayed; its replay must
    not either."""
    cfg = resolve_config(config_path=str(_old_export(tmp_path, [50, 160, 180])))
    assert cfg.optim.milestone_fractions == [50 / 60]
    assert decays(cfg) == [50]
    assert "[160, 180] lie at or beyond its 60 epochs and never applied" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["set", "recipe"])
def test_absolute_milestones_without_their_run_length_are_refused(tmp_path, where):
    if where == "set":
        call = {"sets": ["optim.milestones=[1]"]}
    else:
        recipe = tmp_path / "mine.yaml"
        recipe.write_text("optim: {schedule: step, milestones: [160, 180]}\n")
        call = {"recipe": str(recipe)}
    with pytest.raises(UserError, match=r"optim\.milestones.*optim\.milestone_fractions.*0\.8"):
        resolve_config(dataset="cifar10_lt", **call)


@pytest.mark.parametrize(("sets", "key"), [
    (["optim.warmup_epochs=5", "train.epochs=5"], "optim.warmup_epochs"),
    (["optim.milestone_fractions=[0.9, 0.8]"], "optim.milestone_fractions"),
    (["optim.milestone_fractions=[0.5, 0.5]"], "optim.milestone_fractions"),
    (["optim.milestone_fractions=[0.0, 0.5]"], "optim.milestone_fractions"),
    (["optim.milestone_fractions=[0.8, 1.0]"], "optim.milestone_fractions"),
    (["optim.schedule=step", "optim.warmup_epochs=5", "optim.milestone_fractions=[0.1]"],
     "optim.milestone_fractions"),
    (["train.threads=0"], "train.threads"),
    (["train.extensions=[{at_epoch: 3, from_epochs: 3, to_epochs: 5}]"], "train.epochs"),
    (["train.epochs=5", "train.extensions=[{at_epoch: 4, from_epochs: 3, to_epochs: 5}]"],
     "train.extensions[0].at_epoch"),
    (["train.epochs=5", "train.extensions=[{at_epoch: 3, from_epochs: 3, to_epochs: 3}]"],
     "train.extensions[0]"),
    (["train.epochs=5", "train.extensions=[{at_epoch: 3, to_epochs: 5}]"],
     "train.extensions[0].from_epochs"),
])
def test_an_impossible_schedule_is_one_line_naming_the_key(sets, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.").replace("[", r"\[")
                       .replace("]", r"\]")) as err:
        resolve_config(dataset="digits_lt", sets=sets)
    assert "\n" not in str(err.value)


def test_a_short_cifar_run_is_refused_for_its_warm_up_but_smoke_drops_it():
    with pytest.raises(UserError, match=r"optim\.warmup_epochs.*never leave its warm-up"):
        resolve_config(dataset="cifar10_lt", overrides={"train": {"epochs": 3}})
    from dnet_tune.run import smoke_overrides

    smoke = resolve_config(dataset="cifar10_lt", overrides=smoke_overrides())
    assert smoke.optim.warmup_epochs == 0 and smoke.train.epochs == 2


# ----------------------------------------------------------------------------- extensions


def cosine(epochs: int):
    return resolve_config(dataset="digits_lt", overrides={"train": {"epochs": epochs}})


def test_extending_a_finished_run_continues_at_its_last_lr():
    """A 30-epoch cosine run resumed to 60 jumped from lr 0.00014 back to 0.025 at epoch 31."""
    base = cosine(30)
    longer = extended(base, 30, 30)
    lrs = [lr_at(longer, e) for e in range(60)]
    assert lrs[:30] == [lr_at(base, e) for e in range(30)]
    assert lrs[30:] == [lrs[29]] * 30
    assert lrs[29] < 2e-4


def test_extending_mid_run_stretches_the_rest_of_the_schedule():
    base = cosine(30)
    longer = extended(base, 20, 30)
    lrs = [lr_at(longer, e) for e in range(60)]
    assert lrs[:21] == [lr_at(base, e) for e in range(21)]  # what ran, and the next epoch
    assert all(b < a for a, b in itertools.pairwise(lrs[20:]))  # no jump, decreasing
    assert lrs[59] == pytest.approx(lr_at(base, 29))  # ends where the schedule ends
    twice = extended(longer, 40, 10)
    more = [lr_at(twice, e) for e in range(70)]
    assert more[:41] == lrs[:41] and more[69] == pytest.approx(lrs[59])
    assert all(b < a for a, b in itertools.pairwise(more[20:]))


def test_extending_a_step_schedule_keeps_what_ran_and_stretches_the_steps():
    base = resolve_config(dataset="cifar10_lt", overrides={"train": {"epochs": 60}})
    longer = extended(base, 30, 60)  # at epoch 30 of 60 (steps due at 48, 54) to 120
    assert [lr_at(longer, e) for e in range(31)] == [lr_at(base, e) for e in range(31)]
    # epochs 30…59 stretched onto 30…119: the steps at 48 and 54 move to the first epochs e
    # with 30 + (e - 30) * 29 / 89 past them
    assert decays(longer) == [86, 104]
    ended = extended(base, 60, 20)  # after the last step: stays at the last lr
    assert [lr_at(ended, e) for e in range(59, 80)] == [lr_at(base, 59)] * 21
    assert lr_at(base, 59) == pytest.approx(1e-5)


def test_an_extension_is_recorded_and_round_trips_through_the_config():
    longer = extended(cosine(3), 3, 2)
    data = config_to_dict(longer)
    assert data["train"]["epochs"] == 5
    assert data["train"]["extensions"] == [{"at_epoch": 3, "from_epochs": 3, "to_epochs": 5,
                                            "lr": "stretch"}]
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(data))) == longer


def test_extend_refuses_stage_2_and_nothing_to_add():
    two = resolve_config(dataset="digits_lt", sets=["stage2.enabled=true"],
                         overrides={"train": {"epochs": 2}})
    with pytest.raises(UserError, match="stage 2"):
        extended(two, 3, 2)
    assert extended(two, 2, 2).train.epochs == 4  # at the boundary, stage 1 can still grow
    with pytest.raises(UserError, match="--extend"):
        extended(cosine(3), 3, 0)
