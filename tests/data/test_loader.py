import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dnet_tune.config import DataConfig
from dnet_tune.data import build_dataset
from dnet_tune.data.augment import AUGMENTS
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.loader import MetaBatches, TensorBatches, make_batches

CPU = torch.device("cpu")


def synthetic(n: int = 40, size: int = 32, channels: int = 3) -> LTDataset:
    """Images whose pixel (0, 0, 0) is the item index, so batches can be traced back."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    split = Split(labels=np.arange(n, dtype=np.int64) % 4, images=images)
    return LTDataset(name="synthetic", num_classes=4, train=split, meta=split, val=split,
                     test=split, mean=(0.5,) * channels, std=(0.25,) * channels,
                     image_size=size, in_channels=channels)


def raw_ids(x: torch.Tensor, ds: LTDataset) -> list[int]:
    """Undo the normalisation of pixel (0, 0, 0)."""
    px = (x[:, 0, 0, 0] * ds.std[0] + ds.mean[0]) * 255
    return px.round().long().tolist()


def batches_of(loader, seed):
    return list(loader.epoch(torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("augment", AUGMENTS)
def test_same_seed_same_batches_different_seed_different(augment):
    ds = synthetic()
    loader = TensorBatches(ds.train, ds, 16, shuffle=True, augment=augment, device=CPU)
    a, b, c = batches_of(loader, 0), batches_of(loader, 0), batches_of(loader, 1)
    assert len(a) == len(loader) == 3
    assert [x.shape for x, _ in a] == [(16, 3, 32, 32), (16, 3, 32, 32), (8, 3, 32, 32)]
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in a)
    for (x1, y1), (x2, y2) in zip(a, b, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, c, strict=True))


def test_augmentation_leaves_the_global_rng_alone():
    ds = synthetic()
    loader = TensorBatches(ds.train, ds, 16, shuffle=True, augment="autoaugment", device=CPU)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    batches_of(loader, 0)
    assert torch.equal(torch.rand(3), expected)


def test_no_augment_no_shuffle_is_plain_normalisation():
    ds = synthetic()
    loader = TensorBatches(ds.test, ds, 64, shuffle=False, augment="none", device=CPU)
    ((x, y),) = list(loader.epoch(None))
    want = (ds.test.images.float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, want, atol=1e-5)
    assert y.tolist() == ds.test.labels.tolist()


def _matches_a_crop(out: torch.Tensor, img: torch.Tensor, pad: int, flips: bool) -> bool:
    padded = F.pad(img, (pad, pad, pad, pad))
    h, w = img.shape[1:]
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            if torch.equal(out, crop) or (flips and torch.equal(out, crop.flip(2))):
                return True
    return False


@pytest.mark.parametrize(("size", "channels", "pad"), [(32, 3, 4), (8, 1, 1)])
def test_crop_flip_is_a_padded_crop(size, channels, pad):
    ds = synthetic(n=12, size=size, channels=channels)
    loader = TensorBatches(ds.train, ds, 12, shuffle=False, augment="crop_flip", device=CPU)
    ((x, _),) = batches_of(loader, 0)
    back = ((x * 0.25 + 0.5) * 255).round().to(torch.uint8)
    for out, img in zip(back, ds.train.images, strict=True):
        # grey digits are never mirrored; RGB images may be
        assert _matches_a_crop(out, img, pad, flips=channels == 3)
    assert not torch.equal(back, ds.train.images)


def test_cutout_makes_a_mean_coloured_hole():
    ds = synthetic(n=8)
    loader = TensorBatches(ds.train, ds, 8, shuffle=False, augment="autoaugment_cutout",
                           device=CPU)
    ((x, _),) = batches_of(loader, 0)
    zeros = (x == 0).all(dim=1).flatten(1).sum(1)  # hole pixels are 0 in every channel
    assert (zeros >= 8 * 8).all()  # a 16×16 hole clipped at a corner still covers 8×8


def test_len_and_drop_last():
    ds = synthetic(n=40)
    assert len(TensorBatches(ds.train, ds, 16, shuffle=False, augment="none", device=CPU)) == 3
    dropped = TensorBatches(ds.train, ds, 16, shuffle=True, augment="none", device=CPU,
                            drop_last=True)
    assert len(dropped) == 2 and [len(y) for _, y in batches_of(dropped, 0)] == [16, 16]
    empty = Split(labels=np.zeros(0, np.int64),
                  images=torch.zeros(0, 3, 32, 32, dtype=torch.uint8))
    loader = make_batches(empty, ds, 8, shuffle=True, augment="none", device=CPU)
    assert len(loader) == 0 and list(loader.epoch(None)) == []


def test_shuffled_epoch_visits_every_item_once():
    ds = synthetic(n=40)
    loader = TensorBatches(ds.train, ds, 16, shuffle=True, augment="none", device=CPU)
    ids = [i for x, _ in batches_of(loader, 2) for i in raw_ids(x, ds)]
    assert sorted(ids) == list(range(40)) and ids != list(range(40))


def test_meta_batches_are_full_and_cycle_through_h():
    ds = synthetic(n=30)
    meta = MetaBatches(ds.meta, ds, 8, CPU)
    stream = meta.stream(torch.Generator().manual_seed(0))
    batches = [next(stream) for _ in range(15)]  # 120 items = 4 cycles of 30
    assert all(x.shape == (8, 3, 32, 32) and y.shape == (8,) for x, y in batches)
    ids = [i for x, _ in batches for i in raw_ids(x, ds)]
    for cycle in range(4):
        assert sorted(ids[30 * cycle : 30 * (cycle + 1)]) == list(range(30))
    assert ids[:30] != ids[30:60]  # reshuffled every cycle
    again = MetaBatches(ds.meta, ds, 8, CPU).stream(torch.Generator().manual_seed(0))
    assert all(torch.equal(next(again)[0], x) for x, _ in batches[:5])
    labels = torch.cat([y for _, y in batches]).tolist()
    assert labels == [i % 4 for i in ids]


def test_meta_batches_smaller_than_batch_use_all_of_h():
    ds = synthetic(n=5)
    stream = MetaBatches(ds.meta, ds, 100, CPU).stream(torch.Generator().manual_seed(1))
    for _ in range(3):
        x, _ = next(stream)
        assert sorted(raw_ids(x, ds)) == list(range(5))


def test_digits_batches_end_to_end():
    ds = build_dataset(DataConfig(name="digits_lt"))
    train = make_batches(ds.train, ds, 64, shuffle=True, augment="crop_flip", device=CPU)
    assert isinstance(train, TensorBatches)
    x, y = next(iter(train.epoch(torch.Generator().manual_seed(0))))
    assert x.shape == (64, 1, 8, 8) and y.shape == (64,)
    with pytest.raises(ValueError, match="non-empty"):
        MetaBatches(Split(labels=np.zeros(0, np.int64),
                          images=torch.zeros(0, 1, 8, 8, dtype=torch.uint8)), ds, 4, CPU)
