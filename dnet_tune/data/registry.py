"""The dataset registry: config name -> builder, plus each dataset's training recipe.

A recipe is the nested config a dataset is normally trained with (its row of the spec's §6 table);
it sits between the dataclass defaults and the user's YAML, so `dnet-tune train --data cifar100_lt`
is the published setting without a hand-written config. Builders register themselves with
`@DATASETS.register(name, recipe=..., description=...)`. This module is a leaf: the package's
`__init__` imports the builder modules, so importing anything from `dnet_tune.data` sees every
dataset and no builder module imports back into a module that imports it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnet_tune.config import Config, DataConfig
from dnet_tune.data.base import LTDataset
from dnet_tune.errors import UserError
from dnet_tune.registry import Registry

DatasetBuilder = Callable[[DataConfig], LTDataset]

DATASETS: Registry[DatasetBuilder] = Registry("dataset")

DATA_DIR_ENV = "DNET_DATA_DIR"


def resolve_data_dir(cfg: DataConfig) -> Path:
    """cfg.data_dir, else $DNET_DATA_DIR, else ~/.cache/dnet-tune (what `data download` fills)."""
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/dnet-tune").expanduser()


def build_dataset(cfg: DataConfig) -> LTDataset:
    """Build `cfg.name`; an unknown name is a `UserError` listing the registered datasets."""
    builder = DATASETS.get(cfg.name)
    return builder(cfg)


def check_dataset_config(cfg: Config) -> None:
    """What a dataset's recipe needs that only the user can supply: Places-LT's recipe names an
    ImageNet-pretrained backbone, but the weights file is the user's download (registry entry
    `needs_pretrained`: model name -> why), so the run is refused in one line without it."""
    needs = DATASETS.entry(cfg.data.name).info.get("needs_pretrained", {})
    why = needs.get(cfg.model.name)
    if why and cfg.model.pretrained is None:
        raise UserError(f"{cfg.data.name} with model {cfg.model.name} needs model.pretrained: "
                        f"{why}")


def dataset_recipe(name: str) -> dict[str, Any]:
    """A fresh copy of the dataset's config overrides (data/model/method/dn/optim/train)."""
    return copy.deepcopy(DATASETS.entry(name).info.get("recipe", {}))


def summary(ds: LTDataset) -> dict[str, Any]:
    """Per-split class counts and shot groups of an already built dataset."""
    c = ds.num_classes
    return {
        "dataset": ds.name,
        "num_classes": c,
        "train": ds.train.counts(c),
        "meta": ds.meta.counts(c),
        "val": ds.val.counts(c),
        "test": ds.test.counts(c),
        **ds.groups(),
    }


def describe(cfg: DataConfig) -> dict[str, Any]:
    """Build the dataset and summarise it (what `dnet-tune data describe` prints)."""
    return summary(build_dataset(cfg))


def list_datasets() -> list[tuple[str, str]]:
    """(name, description) pairs, sorted by name."""
    return [(n, str(DATASETS.entry(n).info.get("description", ""))) for n in DATASETS.names()]
