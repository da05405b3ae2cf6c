import numpy as np
import pytest
import torch

from dnet_tune.config import DataConfig
from dnet_tune.data import build_dataset
from dnet_tune.data import digits as digits_mod
from dnet_tune.data.longtail import lt_counts
from dnet_tune.errors import UserError


def test_default_profile_and_balance():
    ds = build_dataset(DataConfig(name="digits_lt"))
    assert ds.num_classes == 10
    assert ds.train_counts() == lt_counts(114, 10, 20) == [114, 81, 58, 41, 30, 21, 15, 11, 7, 5]
    assert ds.meta.counts(10) == [10] * 10
    assert ds.val.counts(10) == [10] * 10
    assert ds.test.counts(10) == [40] * 10
    groups = ds.groups()
    assert all(groups[g] for g in ("many", "medium", "few")), groups
    assert ds.train.images.dtype == torch.uint8
    assert tuple(ds.train.images.shape[1:]) == (1, 8, 8)
    assert int(ds.train.images.max()) == 255
    assert (ds.image_size, ds.in_channels) == (8, 1)


def test_split_is_a_pure_function_of_the_config():
    a = build_dataset(DataConfig(name="digits_lt"))
    b = build_dataset(DataConfig(name="digits_lt"))
    for s in ("train", "meta", "val", "test"):
        assert torch.equal(getattr(a, s).images, getattr(b, s).images)
        assert (getattr(a, s).labels == getattr(b, s).labels).all()


def test_splits_are_disjoint(monkeypatch):
    real_images, labels = digits_mod._load()
    ids = np.arange(len(labels))
    tagged = np.zeros_like(real_images)
    tagged[:, 0, 0, 0] = ids % 256
    tagged[:, 0, 0, 1] = ids // 256
    monkeypatch.setattr(digits_mod, "_load", lambda: (tagged, labels))
    ds = build_dataset(DataConfig(name="digits_lt", meta_per_class=7, val_per_class=5,
                                  imbalance=10))
    def identity(split):
        px = split.images[:, 0, 0].numpy().astype(np.int64)
        out = px[:, 0] + 256 * px[:, 1]
        assert (labels[out] == split.labels).all()
        return set(out.tolist())
    sets = [identity(getattr(ds, s)) for s in ("train", "meta", "val", "test")]
    assert sum(len(s) for s in sets) == len(set().union(*sets))
    n_max = 174 - 40 - 7 - 5
    assert ds.train_counts() == lt_counts(n_max, 10, 10)
    assert ds.meta.counts(10) == [7] * 10 and ds.val.counts(10) == [5] * 10


def test_too_large_imbalance_or_held_out_sets_are_user_errors():
    with pytest.raises(UserError, match=r"data\.imbalance"):
        build_dataset(DataConfig(name="digits_lt", imbalance=500))
    with pytest.raises(UserError, match="meta_per_class"):
        build_dataset(DataConfig(name="digits_lt", meta_per_class=100, val_per_class=50))
