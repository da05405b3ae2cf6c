"""Augmentation once per epoch (`data.augment_span: epoch`) against torchvision, image by image.

The drawn parameters of the epoch are re-drawn here from the same generator in the documented
order (permutation; crop offsets and flips of all images; AutoAugment's choices of all images;
Cutout's centres of all images), then each image goes through torchvision's functional ops with
those parameters. Tolerance: none, as in test_augment.py (uint8 ops, nearest-neighbour sampling).
Normalisation is the loader's own (the same function per batch in both spans), applied to
torchvision's uint8 result.
"""

import hashlib

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from stopped_runs import stop_and_resume
from test_augment import DEVICES, images, tv_op

from dnet_tune.config import config_from_dict, config_to_dict
from dnet_tune.data import augment as A
from dnet_tune.data.augment_epoch import (
    EPOCH_SPAN_MAX_BYTES,
    epoch_bytes,
    recorded_span,
    resolve_augment_span,
    resolve_span,
)
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.loader import TensorBatches, make_batches
from dnet_tune.errors import UserError

CPU = torch.device("cpu")


def dataset(x: torch.Tensor) -> LTDataset:
    """One class per image, so the labels of a batch name its images."""
    n = len(x)
    split = Split(labels=np.arange(n, dtype=np.int64), images=x)
    return LTDataset(name="tiny", num_classes=n, train=split, meta=split, val=split, test=split,
                     mean=(0.5, 0.4, 0.3)[: x.shape[1]], std=(0.25, 0.2, 0.3)[: x.shape[1]],
                     image_size=x.shape[-1], in_channels=x.shape[1])


def torchvision_epoch(loader: TensorBatches, seed: int, cutout: int) -> tuple[torch.Tensor, ...]:
    """The epoch's images as torchvision makes them from the epoch span's draws, in order."""
    x = loader.images
    n, _, hgt, wid = x.shape
    pad = max(1, hgt // 8)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    oy, ox = (torch.randint(0, 2 * pad + 1, (n,), generator=g) for _ in range(2))
    mirror = torch.rand(n, generator=g) < 0.5 if loader.flip else torch.zeros(n, dtype=torch.bool)
    d = loader._autoaugment.draw(n, g) if loader._autoaugment is not None else None
    cy = torch.randint(0, hgt, (n,), generator=g) if cutout else None
    cx = torch.randint(0, wid, (n,), generator=g) if cutout else None
    out = []
    for i, k in enumerate(order.tolist()):
        img = TF.crop(TF.pad(x[k], [pad]), int(oy[i]), int(ox[i]), hgt, wid)
        if mirror[i]:
            img = TF.horizontal_flip(img)
        for slot in range(2) if d is not None else ():
            if d.applied[i, slot]:
                img = tv_op(A.OPS[int(d.op[i, slot])], float(d.magnitude[i, slot]))(img)
        img = loader.normalize(img[None])[0]
        if cutout:
            top, left = int(cy[i]) - cutout // 2, int(cx[i]) - cutout // 2
            img[:, max(top, 0) : top + cutout, max(left, 0) : left + cutout] = 0
        out.append(img)
    return order, torch.stack(out), d


def test_epoch_span_equals_torchvision_per_image_for_every_op_group():
    ds = dataset(images(n=100))  # 300 images: every sub-policy and op several times
    loader = TensorBatches(ds.train, ds, 64, shuffle=True, augment="autoaugment_cutout",
                           device=CPU, cutout_size=12, span="epoch")
    batches = list(loader.epoch(torch.Generator().manual_seed(11)))
    order, want, d = torchvision_epoch(loader, 11, 12)
    assert [len(y) for _, y in batches] == [64, 64, 64, 64, 44]  # the last, smaller one kept
    got = torch.cat([x for x, _ in batches])
    for i in range(len(order)):
        assert torch.equal(got[i], want[i]), (i, A.CIFAR10_POLICY[int(d.subpolicy[i])])
    in_policy = {op for sub in A.CIFAR10_POLICY for op, _, _ in sub}
    assert {A.OPS[int(k)] for k in d.op[d.applied]} == in_policy  # every op group ran
    holes = (got == 0).all(1)
    assert holes.flatten(1).any(1).all()  # every image has its Cutout hole


@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 8)])
def test_epoch_span_crop_flip_is_torchvision_crop_and_flip(channels, size):
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (50, channels, size, size), generator=g, dtype=torch.uint8)
    ds = dataset(x)
    loader = TensorBatches(ds.train, ds, 16, shuffle=True, augment="crop_flip", device=CPU,
                           span="epoch")
    got = torch.cat([b for b, _ in loader.epoch(torch.Generator().manual_seed(3))])
    _, want, _ = torchvision_epoch(loader, 3, 0)
    assert torch.equal(got, want)


def test_epoch_batches_cover_the_permutation_once_with_their_labels():
    ds = dataset(images(n=14))  # 42 images
    loader = TensorBatches(ds.train, ds, 16, shuffle=True, augment="autoaugment_cutout",
                           device=CPU, span="epoch")
    assert len(loader) == 3
    batches = list(loader.epoch(torch.Generator().manual_seed(5)))
    labels = torch.cat([y for _, y in batches]).tolist()
    assert labels == torch.randperm(42, generator=torch.Generator().manual_seed(5)).tolist()
    assert [x.shape[0] for x, _ in batches] == [16, 16, 10]
    assert all(x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) for x, _ in batches)
    order = torch.tensor([3, 3, 0, 41, 7])  # a sampler's order, repeats allowed
    sampled = list(loader.epoch(torch.Generator().manual_seed(5), order))
    assert torch.cat([y for _, y in sampled]).tolist() == order.tolist()
    dropped = TensorBatches(ds.train, ds, 16, shuffle=True, augment="crop_flip", device=CPU,
                            drop_last=True, span="epoch")
    assert [len(y) for _, y in dropped.epoch(torch.Generator().manual_seed(5))] == [16, 16]
    empty = Split(labels=np.zeros(0, np.int64), images=torch.zeros(0, 3, 32, 32).byte())
    none = TensorBatches(empty, ds, 16, shuffle=True, augment="autoaugment_cutout", device=CPU,
                         span="epoch")
    assert len(none) == 0 and list(none.epoch(torch.Generator().manual_seed(5))) == []


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_epoch_span_is_deterministic_given_the_generator(device):
    ds = dataset(images(n=10))
    loader = TensorBatches(ds.train, ds, 8, shuffle=True, augment="autoaugment_cutout",
                           device=device, span="epoch")
    torch.manual_seed(9)
    expected_global = torch.rand(3)
    torch.manual_seed(9)
    a, b, c = (list(loader.epoch(torch.Generator().manual_seed(s))) for s in (1, 1, 2))
    assert torch.equal(torch.rand(3), expected_global)  # the global RNG untouched
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2)
               for (x1, y1), (x2, y2) in zip(a, b, strict=True))
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, c, strict=True))
    assert a[0][0].device.type == device.type
    assert torch.equal(loader.images.cpu(), images(n=10))  # the split untouched
    per_batch = TensorBatches(ds.train, ds, 8, shuffle=True, augment="autoaugment_cutout",
                              device=device, span="batch")
    other = list(per_batch.epoch(torch.Generator().manual_seed(1)))
    # same permutation (drawn first in both spans), other draw order for the augmentation
    assert all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(a, other, strict=True))
    assert not torch.equal(a[0][0], other[0][0])


def test_without_augmentation_both_spans_give_the_same_batches():
    ds = dataset(images(n=10))
    spans = [list(TensorBatches(ds.train, ds, 8, shuffle=True, augment="none", device=CPU,
                                span=s).epoch(torch.Generator().manual_seed(4)))
             for s in ("batch", "epoch")]
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2)
               for (x1, y1), (x2, y2) in zip(*spans, strict=True))


# ----------------------------------------------------------------------------- the config switch


def test_augment_span_config_key():
    assert config_from_dict({}).data.augment_span == "auto"
    for span in ("auto", "batch", "epoch"):
        cfg = config_from_dict({"data": {"augment_span": span}})
        assert config_to_dict(cfg)["data"]["augment_span"] == span
    for bad in ("epochs", 1, None):
        with pytest.raises(UserError, match=r"'data\.augment_span' must be"):
            config_from_dict({"data": {"augment_span": bad}})
    with pytest.raises(ValueError, match="span"):
        TensorBatches(dataset(images(n=1)).train, dataset(images(n=1)), 2, shuffle=True,
                      augment="none", device=CPU, span="auto")  # resolved before it gets here


def test_auto_span_resolves_by_device_and_epoch_size():
    def span(given: str, device: str, size: int | None) -> str:
        cfg = config_from_dict({"data": {"augment_span": given}})
        return resolve_augment_span(cfg, device, size).data.augment_span

    assert span("auto", "cpu", 40 << 20) == "batch"
    assert span("auto", "cuda", 40 << 20) == "epoch"
    assert span("auto", "cuda", EPOCH_SPAN_MAX_BYTES) == "epoch"
    assert span("auto", "cuda", EPOCH_SPAN_MAX_BYTES + 1) == "batch"
    assert span("epoch", "cpu", 40 << 20) == "epoch" and span("batch", "cuda", 1) == "batch"
    assert span("auto", "cuda", None) == "batch" == span("batch", "cpu", None)  # files
    with pytest.raises(UserError, match=r"augment_span.*decoded from files"):
        span("epoch", "cuda", None)


def test_a_checkpoint_from_before_the_span_resumes_per_batch():
    old = config_to_dict(config_from_dict({}))
    del old["data"]["augment_span"]
    assert config_from_dict(recorded_span(old)).data.augment_span == "batch"  # not auto
    assert "augment_span" not in old["data"]  # the caller's dict is left alone
    new = config_to_dict(config_from_dict({"data": {"augment_span": "epoch"}}))
    assert recorded_span(new) == new


def test_epoch_bytes_counts_the_longest_epoch():
    x = images(n=4)  # 12 images of 3 KiB
    labels = np.array([0] * 6 + [1] * 4 + [2] * 2, dtype=np.int64)
    split = Split(labels=labels, images=x)
    ds = LTDataset(name="tiny", num_classes=3, train=split, meta=split, val=split, test=split,
                   mean=(0.5,) * 3, std=(0.2,) * 3, image_size=32)
    assert epoch_bytes(ds, stage2=False) == 12 * 3 * 32 * 32
    assert epoch_bytes(ds, stage2=True) == 6 * 3 * (3 * 32 * 32)  # n_max · C = 18 images
    files = Split(labels=labels, paths=["/x.jpg"] * 12)
    assert epoch_bytes(LTDataset(name="f", num_classes=3, train=files, meta=files, val=files,
                                 test=files, mean=(0.5,) * 3, std=(0.2,) * 3, image_size=32),
                       stage2=False) is None


def test_the_trainer_records_the_span_it_ran():
    from dnet_tune.train import Trainer

    trainer = Trainer(config_from_dict({"train": {"epochs": 1, "device": "cpu"},
                                        "data": {"augment": "crop_flip"}}))
    assert trainer.cfg.data.augment_span == "batch"  # auto on the CPU
    assert config_to_dict(trainer.cfg)["data"]["augment_span"] == "batch"
    assert trainer.train_batches.span == "batch"
    asked = Trainer(config_from_dict({"train": {"epochs": 1, "device": "cpu"},
                                      "data": {"augment": "crop_flip", "augment_span": "epoch"}}))
    assert asked.cfg.data.augment_span == "epoch" == asked.train_batches.span


def test_a_run_with_the_epoch_span_resumes_exactly_through_stage_2(tmp_path):
    """The span's draws come from the epoch's generator alone: a run stopped after stage 1 and
    resumed from its checkpoint (stage 2's class-aware order, repeats included) is the same run."""
    from dnet_tune.run import resolve_config
    from dnet_tune.train import Trainer

    cfg = resolve_config(dataset="digits_lt", sets=[
        "data.augment=crop_flip", "data.augment_span=epoch", "stage2.enabled=true",
        "stage2.epochs=1"], overrides={"method": {"name": "ce"}, "train": {"epochs": 2}})
    full = Trainer(cfg)
    uninterrupted = list(full.fit())
    resumed = stop_and_resume(cfg, 2, tmp_path / "ckpt.pt")
    rest = list(resumed.fit())
    assert [(m["epoch"], m["stage"]) for m in rest] == [(3, 2)]
    drop = "epoch_time_s"
    assert ([{k: v for k, v in r.items() if k != drop} for r in resumed.history]
            == [{k: v for k, v in r.items() if k != drop} for r in uninterrupted])
    assert resumed.stage2 is not None and resumed.stage2.batches.span == "epoch"


# ----------------------------------------------------------------------------- CPU unchanged

# sha256 of today's batches (rounded to 1e-3, and labels), computed on main at 0ad9ebe before
# the span existed: `auto` on the CPU must keep them bit-identical
TODAY = {
    "crop_flip": "fc85a3e438f161995c610f81696c27200138bbd646f87b5b80f580433270a480",
    "autoaugment": "1274486730613bba122cb8c178cdcf6087a07efa05da6f49855e4e7689455998",
    "autoaugment_cutout": "f6b4e8df39b48073157ac86a2254dcd3e12c342b2b77e84cef093beb546d8fe0",
}


@pytest.mark.parametrize("augment", sorted(TODAY))
def test_auto_on_the_cpu_keeps_today_s_batches(augment):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 32, 32), generator=g, dtype=torch.uint8)
    split = Split(labels=np.arange(40, dtype=np.int64) % 4, images=x)
    ds = LTDataset(name="synthetic", num_classes=4, train=split, meta=split, val=split,
                   test=split, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3), image_size=32)
    cfg = resolve_span(config_from_dict({"data": {"augment": augment}}), CPU, ds)
    assert cfg.data.augment_span == "batch"
    loader = make_batches(ds.train, ds, 16, shuffle=True, augment=augment, device=CPU,
                          span=cfg.data.augment_span)
    batches = list(loader.epoch(torch.Generator().manual_seed(3)))
    h = hashlib.sha256()
    for b, y in batches:
        h.update(torch.round(b * 1000).to(torch.int64).numpy().tobytes())
        h.update(y.numpy().tobytes())
    assert h.hexdigest() == TODAY[augment]
    # and exactly (no rounding) today's per-batch pipeline, batch after batch
    g = torch.Generator().manual_seed(3)
    order = torch.randperm(40, generator=g)
    aa = A.AutoAugment() if augment.startswith("autoaugment") else None
    for k, (b, y) in enumerate(batches):
        idx = order[16 * k : 16 * (k + 1)]
        want = A.crop_flip(x[idx], g, True)
        want = loader.normalize(aa(want, g) if aa is not None else want)
        if augment == "autoaugment_cutout":
            want = A.cutout(want, g, 16)
        assert torch.equal(b, want) and torch.equal(y, split_labels(split)[idx])


def split_labels(split: Split) -> torch.Tensor:
    return torch.as_tensor(split.labels, dtype=torch.int64)
