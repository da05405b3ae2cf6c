from pathlib import Path

import pytest
import torch
from datagen import write_folder, write_oltr

from dnet_tune.config import DataConfig
from dnet_tune.data import build_dataset
from dnet_tune.data.loader import FileBatches, MetaBatches, make_batches
from dnet_tune.errors import UserError


@pytest.mark.parametrize(("name", "folder"), [("imagenet_lt", "ImageNet_LT"),
                                              ("places_lt", "Places_LT")])
def test_oltr_lists(tmp_path, name, folder):
    write_oltr(tmp_path, folder, [7, 4, 2], val_per_class=5, test_per_class=3)
    cfg = DataConfig(name=name, data_dir=str(tmp_path), meta_per_class=2, val_per_class=3,
                     imbalance=100)
    ds = build_dataset(cfg)
    assert ds.num_classes == 3
    assert ds.train_counts() == [7, 4, 2]  # the list as is; imbalance ignored
    assert ds.meta.counts(3) == [2, 2, 2]
    assert ds.val.counts(3) == [3, 3, 3]
    assert ds.test.counts(3) == [3, 3, 3]
    assert ds.class_names == ["cls00", "cls01", "cls02"]
    assert (ds.image_size, ds.in_channels) == (224, 3)
    splits = {s: getattr(ds, s).paths for s in ("train", "meta", "val", "test")}
    for paths in splits.values():
        assert paths and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert not set(splits["meta"]) & set(splits["val"])
    assert set(splits["meta"]) | set(splits["val"]) <= {
        str(tmp_path / folder / f"train/cls{c:02d}/val_{k:03d}.jpg")
        for c in range(3) for k in range(5)
    }
    assert not ds.train.in_memory
    # the H/V draw does not depend on anything but the lists
    again = build_dataset(cfg)
    assert again.meta.paths == ds.meta.paths and again.val.paths == ds.val.paths


def test_file_batches_shapes_and_determinism(tmp_path):
    write_oltr(tmp_path, "Places_LT", [5, 3, 2], val_per_class=4, test_per_class=2)
    ds = build_dataset(DataConfig(name="places_lt", data_dir=str(tmp_path), meta_per_class=2,
                                  val_per_class=2))
    cpu = torch.device("cpu")
    train = make_batches(ds.train, ds, 4, shuffle=True, augment="crop_flip", device=cpu)
    assert isinstance(train, FileBatches) and len(train) == 3

    def run(seed):
        return list(train.epoch(torch.Generator().manual_seed(seed)))

    a, b, c = run(0), run(0), run(1)
    assert [x.shape for x, _ in a] == [(4, 3, 224, 224), (4, 3, 224, 224), (2, 3, 224, 224)]
    assert all(y.dtype == torch.int64 for _, y in a)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2)
               for (x1, y1), (x2, y2) in zip(a, b, strict=True))
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, c, strict=True))
    test = make_batches(ds.test, ds, 8, shuffle=False, augment="none", device=cpu)
    ys = [y for _, y in test.epoch(None)]
    assert torch.cat(ys).tolist() == ds.test.labels.tolist()
    meta = MetaBatches(ds.meta, ds, 4, cpu).stream(torch.Generator().manual_seed(0))
    x, y = next(meta)
    assert x.shape == (4, 3, 224, 224) and y.shape == (4,)


def test_file_batches_with_workers(tmp_path):
    write_folder(tmp_path / "tree", [9, 9])
    ds = build_dataset(DataConfig(name="folder_lt", data_dir=str(tmp_path / "tree"),
                                  meta_per_class=1, val_per_class=1, imbalance=2))
    cpu = torch.device("cpu")
    batches = make_batches(ds.train, ds, 3, shuffle=True, augment="autoaugment", device=cpu,
                           num_workers=2)
    one = [x for x, _ in batches.epoch(torch.Generator().manual_seed(3))]
    plain = make_batches(ds.train, ds, 3, shuffle=True, augment="autoaugment", device=cpu)
    two = [x for x, _ in plain.epoch(torch.Generator().manual_seed(3))]
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))  # workers don't matter
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    list(plain.epoch(torch.Generator().manual_seed(3)))
    assert torch.equal(torch.rand(3), expected)  # the caller's global RNG is left alone
    assert one[0].shape == (3, 3, 112, 112)


def test_folder_lt(tmp_path):
    root = write_folder(tmp_path / "tree", [12, 11, 13])
    ds = build_dataset(DataConfig(name="folder_lt", data_dir=str(root), imbalance=4,
                                  meta_per_class=1, val_per_class=1))
    # smallest class 11: test int(0.2*11)=2 per class, n_max = 11 - 2 - 1 - 1 = 7
    assert ds.test.counts(3) == [2, 2, 2]
    assert ds.train_counts() == [7, 3, 1]
    assert ds.meta.counts(3) == [1, 1, 1] and ds.val.counts(3) == [1, 1, 1]
    sets = [set(getattr(ds, s).paths) for s in ("train", "meta", "val", "test")]
    assert sum(map(len, sets)) == len(set().union(*sets))
    assert ds.class_names == ["class_0", "class_1", "class_2"] and ds.image_size == 112


def test_list_errors(tmp_path):
    with pytest.raises(UserError) as info:
        build_dataset(DataConfig(name="imagenet_lt", data_dir=str(tmp_path)))
    assert str(tmp_path / "ImageNet_LT" / "ImageNet_LT_train.txt") in str(info.value)
    write_oltr(tmp_path, "ImageNet_LT", [3, 2], val_per_class=2, test_per_class=1)
    with pytest.raises(UserError, match="fewer than"):
        build_dataset(DataConfig(name="imagenet_lt", data_dir=str(tmp_path),
                                 meta_per_class=2, val_per_class=1))
    (tmp_path / "ImageNet_LT" / "ImageNet_LT_val.txt").write_text("a.jpg 0\nbroken\n")
    with pytest.raises(UserError, match=r"ImageNet_LT_val\.txt:2"):
        build_dataset(DataConfig(name="imagenet_lt", data_dir=str(tmp_path)))
    (tmp_path / "ImageNet_LT" / "ImageNet_LT_val.txt").write_text("val/missing.jpg 0\n")
    with pytest.raises(UserError, match="does not exist"):
        build_dataset(DataConfig(name="imagenet_lt", data_dir=str(tmp_path)))


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match=r"data\.data_dir"):
        build_dataset(DataConfig(name="folder_lt"))
    with pytest.raises(UserError, match="not a directory"):
        build_dataset(DataConfig(name="folder_lt", data_dir=str(tmp_path / "none")))
    root = write_folder(tmp_path / "small", [4, 4])
    with pytest.raises(UserError, match="smallest class has 4 images"):
        build_dataset(DataConfig(name="folder_lt", data_dir=str(root)))


def test_file_batch_shards_decode_only_their_part_and_concatenate_to_the_batch(tmp_path):
    """A rank of a distributed run decodes its shard of each batch, with the very pixels the
    whole batch has there (each item's augmentation seed does not depend on the shard)."""
    from dnet_tune.distributed.comm import Comm

    write_folder(tmp_path / "tree", [14, 12])
    ds = build_dataset(DataConfig(name="folder_lt", data_dir=str(tmp_path / "tree"),
                                  meta_per_class=3, val_per_class=1, imbalance=2))
    cpu = torch.device("cpu")
    train = make_batches(ds.train, ds, 5, shuffle=True, augment="crop_flip", device=cpu)
    whole = list(train.epoch(torch.Generator().manual_seed(7)))
    ranks = [list(train.epoch(torch.Generator().manual_seed(7), shard=Comm(r, 3).shard))
             for r in range(3)]
    assert [len(y) for _, y in whole] == [5, 4]  # a short last batch too
    for b, (x, y) in enumerate(whole):
        parts = [rank[b] for rank in ranks]
        assert [len(p[1]) for p in parts] == [len(t) for t in torch.tensor_split(y, 3)]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
    meta = MetaBatches(ds.meta, ds, 6, cpu)
    full = next(meta.stream(torch.Generator().manual_seed(1)))
    halves = [next(meta.stream(torch.Generator().manual_seed(1), shard=Comm(r, 2).shard))
              for r in range(2)]
    assert torch.equal(torch.cat([h[0] for h in halves]), full[0])
    assert torch.equal(torch.cat([h[1] for h in halves]), full[1])
