import json

import pytest
import torch

from dnet_tune.config import config_from_dict
from dnet_tune.data import (
    DATASETS,
    build_dataset,
    dataset_recipe,
    describe,
    list_datasets,
    summary,
)
from dnet_tune.data.loader import make_batches
from dnet_tune.dotted import merge
from dnet_tune.errors import UserError
from dnet_tune.models.registry import MODELS


@pytest.mark.parametrize("name", DATASETS.names())
def test_recipe_is_a_valid_config(name):
    recipe = dataset_recipe(name)
    assert {"data", "model", "optim", "train"} <= set(recipe)
    assert set(recipe) <= {"data", "model", "method", "dn", "optim", "train", "stage2"}
    cfg = config_from_dict(merge(recipe, {"data": {"name": name}}))
    assert cfg.data.name == name
    assert cfg.model.name in MODELS, f"{name} recipe names an unregistered model"
    recipe["data"]["batch_size"] = -1  # a copy: the registered recipe is untouched
    assert dataset_recipe(name)["data"]["batch_size"] > 0


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_builds_from_tiny_data(name, make_data):
    cfg = make_data(name)
    ds = build_dataset(cfg)
    c = ds.num_classes
    assert ds.name == name
    for s in ("train", "meta", "val", "test"):
        split = getattr(ds, s)
        assert (split.images is None) != (split.paths is None), s
        assert split.labels.dtype.kind == "i" and len(split) > 0
        assert ((split.labels >= 0) & (split.labels < c)).all()
    assert len(set(ds.meta.counts(c))) == 1 and len(set(ds.val.counts(c))) == 1
    assert len(ds.mean) == len(ds.std) == ds.in_channels
    info = summary(ds)
    assert info["train"] == ds.train_counts()
    assert sorted(info["many"] + info["medium"] + info["few"]) == list(range(c))
    json.dumps(info)  # plain ints and lists only
    x, _ = next(iter(make_batches(ds.train, ds, 4, shuffle=True, augment="none",
                                  device=torch.device("cpu")).epoch(torch.Generator())))
    assert x.shape == (min(4, len(ds.train)), ds.in_channels, ds.image_size, ds.image_size)


def test_describe_digits():
    info = describe(config_from_dict({}).data)
    assert info["dataset"] == "digits_lt" and info["num_classes"] == 10
    assert set(info) == {"dataset", "num_classes", "train", "meta", "val", "test",
                         "many", "medium", "few"}
    assert info["meta"] == [10] * 10


def test_listing_and_unknown_names():
    names = [n for n, _ in list_datasets()]
    assert names == DATASETS.names()
    assert {"cifar10_lt", "cifar100_lt", "digits_lt", "imagenet_lt", "places_lt",
            "folder_lt"} <= set(names)
    assert all(desc for _, desc in list_datasets())
    with pytest.raises(UserError, match="cifar10_lt"):
        dataset_recipe("mnist_lt")
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        build_dataset(config_from_dict({"data": {"name": "nope"}}).data)


def test_download_refuses_what_it_cannot_fetch(tmp_path):
    from dnet_tune.data.download import download

    with pytest.raises(UserError, match="cannot be downloaded"):
        download("imagenet_lt", tmp_path)
    with pytest.raises(UserError, match="choose cifar10 or cifar100"):
        download("svhn", tmp_path)


# A value other than the default for every DataConfig field outside CONSTRUCTION_KEYS.
NOT_CONSTRUCTION = {"augment": "crop_flip", "cutout_size": 8, "augment_span": "epoch",
                    "batch_size": 7, "meta_batch_size": 9, "eval_batch_size": 11, "num_workers": 1}


def _splits(ds):
    return {s: (getattr(ds, s).labels.tolist(), getattr(ds, s).paths,
                None if getattr(ds, s).images is None else getattr(ds, s).images.sum().item())
            for s in ("train", "meta", "val", "test")}


@pytest.mark.parametrize("name", DATASETS.names())
def test_only_the_construction_keys_change_the_splits(name, make_data):
    """CONSTRUCTION_KEYS is what a search refuses to sample: a field a builder reads but the
    list lacks would give trials data they never trained on."""
    import dataclasses

    from dnet_tune.config import DataConfig
    from dnet_tune.data.registry import CONSTRUCTION_KEYS

    fields = {f.name for f in dataclasses.fields(DataConfig)}
    assert set(CONSTRUCTION_KEYS) | set(NOT_CONSTRUCTION) == fields
    assert not set(CONSTRUCTION_KEYS) & set(NOT_CONSTRUCTION)
    cfg = make_data(name)
    same = build_dataset(dataclasses.replace(cfg, **NOT_CONSTRUCTION))
    assert _splits(same) == _splits(build_dataset(cfg))
    other = build_dataset(dataclasses.replace(cfg, val_per_class=cfg.val_per_class - 1))
    assert _splits(other) != _splits(same)
