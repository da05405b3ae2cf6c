"""A training run on disk: resolve the config, train, and write the run directory.

Layout of `--output`: `config.yaml` (complete and resolved: feeding it back to `--config`
reproduces the run, extensions included), `metrics.parquet` (one row per epoch),
`checkpoint.pt` (everything needed to continue exactly, plus the selected weights), `final.json`
(the epoch selected by val_acc).

A resume continues the run its checkpoint describes and nothing else: a flag that would change
it is refused, and the one way to change it, a longer stage 1 (`--extend N`), is recorded in the
config (`train.extensions`) with the epoch at which it happened.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnet_tune.config import (
    Config,
    DataConfig,
    Extension,
    config_from_dict,
    config_to_dict,
    load_yaml,
    parse_set,
    total_epochs,
)
from dnet_tune.dotted import merge
from dnet_tune.errors import DamagedFile, UserError
from dnet_tune.fileio import atomic_write_json, atomic_write_text, write_parquet_rows
from dnet_tune.recipe import recipe_layer
from dnet_tune.schedule import STRETCH, migrate_milestones
from dnet_tune.yamlio import dump_yaml

PROVENANCE_KEY = "provenance"  # extra block in exported configs; not part of the run config
PROVENANCE_END = "note"  # the provenance's last key: an exported config cut short lacks it
# what `train --resume` may be given: the run to continue, how to show it, a named extension
RESUME_FLAGS = frozenset({"command", "resume", "output", "quiet", "extend"})


def note(text: str) -> None:
    """A fact the user must not miss although nothing failed (stderr, like errors)."""
    print(f"dnet-tune: note: {text}", file=sys.stderr)


def smoke_overrides() -> dict[str, Any]:
    """Shrinks any run to seconds (CI, `--smoke`); the method and data stay the real ones.
    No warm-up: two epochs cannot hold a recipe's (CIFAR: 5)."""
    return {"train": {"epochs": 2}, "stage2": {"epochs": 1}, "optim": {"warmup_epochs": 0}}


def check_resume_flags(given: dict[str, Any], defaults: dict[str, Any]) -> None:
    """`train --resume` takes no flag that would change the run (one line naming the first);
    `--extend` needs `--resume`. `given`/`defaults`: the parsed flags and the parser's defaults."""
    if not given.get("resume"):
        if given.get("extend") is not None:
            raise UserError("--extend lengthens a run being resumed: pass --resume --output "
                            "<run dir> --extend N")
        return
    for key, value in given.items():
        if key in RESUME_FLAGS or value == defaults.get(key, value):
            continue
        flag = "--" + key.replace("_", "-")
        longer = ("; to train longer, --extend N adds N stage-1 epochs (recorded in the run)"
                  if key == "epochs" else "")
        raise UserError(f"{flag} cannot be combined with --resume: a resumed run continues "
                        f"with the config of its checkpoint; drop {flag}{longer}, or train a "
                        f"new run with another --output")


def extended(cfg: Config, done: int, more: int) -> Config:
    """`cfg` with stage 1 `more` epochs longer from completed epoch `done`, recorded in
    `train.extensions` (the schedule's rest is stretched: dnet_tune.schedule)."""
    t = cfg.train
    if more < 1:
        raise UserError(f"--extend must be >= 1 (more stage-1 epochs), got {more}")
    if cfg.stage2.enabled and done > t.epochs:
        raise UserError(f"the run is in stage 2 (epoch {done}; stage 1 ended at {t.epochs}): "
                        f"--extend lengthens stage 1; train a new run with a longer "
                        f"train.epochs instead")
    ext = Extension(at_epoch=done, from_epochs=t.epochs, to_epochs=t.epochs + more, lr=STRETCH)
    return config_from_dict(config_to_dict(dataclasses.replace(
        cfg, train=dataclasses.replace(t, epochs=t.epochs + more, extensions=[*t.extensions,
                                                                               ext]))))


def resolve_dict(
    *,
    dataset: str | None = None,
    recipe: str | None = None,
    config_path: str | None = None,
    sets: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """defaults < dataset recipe < `--recipe` < YAML < `--set` < explicit flags (overrides).

    Unchecked as a whole (the caller converts it); a named recipe is checked on its own.
    """
    from dnet_tune.data.registry import dataset_recipe

    user = load_yaml(config_path) if config_path else {}
    if PROVENANCE_KEY in user:
        _check_exported_whole(user, str(config_path))
    user.pop(PROVENANCE_KEY, None)
    user, migrated = migrate_milestones(user, f"'{config_path}'")
    if migrated:
        note(migrated)
    top = merge(parse_set(sets or []), overrides or {})
    if dataset is not None:
        top = merge(top, {"data": {"name": dataset}})
    name = (
        top.get("data", {}).get("name")
        or (user.get("data") or {}).get("name")
        or Config().data.name
    )
    if not isinstance(name, str):
        raise UserError(f"config key 'data.name' must be a dataset name, got {name!r}")
    base = merge(merge(config_to_dict(Config()), {"data": {"name": name}}), dataset_recipe(name))
    if recipe is not None:
        base = merge(base, recipe_layer(recipe, name))
    return merge(merge(base, user), top)


def _check_exported_whole(user: dict[str, Any], path: str) -> None:
    """An exported config (export, a search's best/ files) holds every section, then its
    provenance, ending with `PROVENANCE_END`: a file cut short (a copy or a disk that ran out)
    lacks the end, and what it lacks would otherwise silently come from the defaults.

    A file cut before its provenance cannot be told from a hand-written partial config.
    """
    prov = user[PROVENANCE_KEY]
    missing = [f.name for f in dataclasses.fields(Config) if f.name not in user]
    if not isinstance(prov, dict) or PROVENANCE_END not in prov:
        missing.append(f"{PROVENANCE_KEY}.{PROVENANCE_END}")
    if not missing:
        return
    exp = prov.get("experiment") if isinstance(prov, dict) else None
    method = prov.get("method") if isinstance(prov, dict) else None
    again = (f"dnet-tune export {exp}{f' --method {method}' if method else ''} --out {path}"
             if exp else "dnet-tune export <experiment>")
    raise DamagedFile(path, f"an exported config cut short: it lacks {', '.join(missing)}",
                      f"export it again: {again}")


def resolve_config(**sources: Any) -> Config:
    """The complete run config (see `resolve_dict`), checked against the method's and the
    dataset recipe's needs."""
    from dnet_tune.data.registry import check_dataset_config
    from dnet_tune.method.methods import check_method_config

    cfg = config_from_dict(resolve_dict(**sources))
    check_method_config(cfg)
    check_dataset_config(cfg)
    return cfg


def resolve_data_config(**sources: Any) -> DataConfig:
    """The data section only: describing data must not depend on which method would train."""
    return config_from_dict(resolve_dict(**sources)).data


def config_yaml(cfg: Config) -> str:
    return dump_yaml(config_to_dict(cfg))


def final_summary(best: dict[str, Any], last_epoch: int, selects_on_val: bool = True
                  ) -> dict[str, Any]:
    by = "val_acc" if selects_on_val else "last_epoch"  # no V split: nothing to select on
    return {"selected_by": by, "selected_epoch": best["epoch"], "last_epoch": last_epoch, **best}


def train_to_dir(
    cfg: Config | None,
    output: str | Path,
    *,
    resume: bool = False,
    extend: int | None = None,
    on_start: Callable[[Any], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    make_trainer: Callable[[Config], Any] | None = None,
    writes: bool = True,
) -> dict[str, Any]:
    """Train into `output`; with `resume`, continue the checkpoint found there, `extend` more
    stage-1 epochs if given. `make_trainer` (default `Trainer`) and `writes`: a distributed run's
    ranks all train, and only rank 0 writes (dnet_tune.distributed.trainer)."""
    from dnet_tune.data.augment_epoch import recorded_span
    from dnet_tune.train import Trainer, load_checkpoint, save_checkpoint

    build = make_trainer if make_trainer is not None else Trainer

    out = Path(output)
    ckpt = out / "checkpoint.pt"
    if resume:
        if not ckpt.is_file():
            raise UserError(f"nothing to resume: '{ckpt}' does not exist")
        state = load_checkpoint(str(ckpt), f"restore it from a backup copy, or train the run "
                                           f"again: dnet-tune train --config {out / 'config.yaml'} "
                                           f"--output <another folder>")
        raw, migrated = migrate_milestones(state["config"], f"the checkpoint '{ckpt}'")
        if migrated and writes:
            note(migrated)
        cfg = config_from_dict(recorded_span(raw))
        if extend is not None:
            cfg = extended(cfg, int(state["epoch"]), extend)
        trainer = build(cfg)
        trainer.load_state_dict(state)
        if extend is not None and writes:  # recorded before any epoch of it runs
            save_checkpoint(trainer, str(ckpt))
            note(f"stage 1 extended from {cfg.train.extensions[-1].from_epochs} to "
                 f"{cfg.train.epochs} epochs at epoch {trainer.epoch} (train.extensions in "
                 f"{out / 'config.yaml'}); the lr continues the rest of its schedule, "
                 f"stretched to the new end")
    else:
        if cfg is None:
            raise ValueError("cfg is required unless resuming")
        if ckpt.exists():
            raise UserError(f"'{out}' already holds a run; pass --resume to continue it "
                            f"or choose another --output")
        trainer = build(cfg)  # builds data and model first: bad input fails before any write
    if writes:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", config_yaml(trainer.cfg))
    if on_start is not None:
        on_start(trainer)
    for metrics in trainer.fit():
        if writes:
            write_parquet_rows(out / "metrics.parquet", trainer.history)
            save_checkpoint(trainer, str(ckpt))
        if on_epoch is not None:
            on_epoch(metrics)
    if trainer.best is None:
        raise UserError(f"no epoch was run: the run's {total_epochs(trainer.cfg)} epochs are "
                        f"done; pass --extend N to train N more")
    final = final_summary(trainer.best, trainer.epoch, trainer.selects_on_val)
    if writes:
        atomic_write_json(out / "final.json", final)
    return final
