"""Batch augmentation (augment, augment_ops) against torchvision.transforms.v2.functional.

Tolerance: every op must equal torchvision exactly. For the pixel ops this is the definition
(uint8 in, uint8 out, same arithmetic). The geometric ops sample with nearest interpolation, as
AutoAugment calls them, so each output pixel is a copy of one input pixel or the fill: there is no
interpolation error to tolerate, only a different choice of source pixel, which would be a bug.
"""

import math

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2 as T2
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from dnet_tune.config import config_from_dict
from dnet_tune.data import augment as A
from dnet_tune.data import augment_ops as O
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.loader import FileBatches, TensorBatches
from dnet_tune.data.registry import dataset_recipe
from dnet_tune.errors import UserError

NEAREST = InterpolationMode.NEAREST
DEVICES = [torch.device("cpu")] + (
    [torch.device("cuda")] if torch.cuda.is_available() else [])


def images(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Full-range noise, low-contrast noise with a constant channel, and smooth gradients."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    lo = torch.randint(0, 200, (n, 3, 1, 1), generator=g)
    span = torch.randint(1, 56, (n, 3, 1, 1), generator=g)
    low = (lo + torch.randint(0, 1000, (n, 3, size, size), generator=g) % span).to(torch.uint8)
    low[: n // 3, 1] = 77
    ramp = torch.linspace(0, 1, size)
    grad = torch.rand(n, 3, 1, 1, generator=g) * ramp[:, None] + torch.rand(n, 3, 1, 1,
                                                                           generator=g) * ramp
    grad = (grad * 127.5).round().to(torch.uint8)
    return torch.cat([noise, low, grad])


def coordinates(size: int = 32) -> torch.Tensor:
    """One image whose pixels name their position (R: column, G: row), for geometric ops."""
    ar = torch.arange(size, dtype=torch.uint8) * (256 // size) + 1
    img = torch.stack([ar.expand(size, size), ar[:, None].expand(size, size),
                       torch.full((size, size), 200, dtype=torch.uint8)])
    return torch.stack([img, images(n=1)[0]])


def per_image(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(img) for img in x])


# ----------------------------------------------------------------------------- the policy table


def test_policy_and_magnitudes_are_torchvisions():
    ours = [tuple(tuple(op) for op in sub) for sub in A.CIFAR10_POLICY]
    assert ours == [tuple(sub) for sub in T.AutoAugment(T.AutoAugmentPolicy.CIFAR10).policies]
    # torchvision keeps the 10-bin scales in a private table; pin ours to it
    space = T2.AutoAugment._AUGMENTATION_SPACE
    for op in A.OPS:
        bins, signed = space[op]
        values = bins(A.NUM_BINS, 32, 32)
        assert (op in A.SIGNED) == signed, op
        if values is None:  # no magnitude
            assert A.magnitude(op, None, 32, 32) == 0.0
            continue
        for level in range(A.NUM_BINS):
            want = float(values[level]) * (255.0 if op == "Solarize" else 1.0)
            assert A.magnitude(op, level, 32, 32) == pytest.approx(want, abs=1e-4), (op, level)
    assert A.magnitude("Solarize", 3, 32, 32) == 170.0  # a pixel of 170 is inverted, as in tv


# ----------------------------------------------------------------------------- ops vs torchvision


def signed_bins(op: str) -> list[float]:
    values = [A.magnitude(op, level, 32, 32) for level in range(A.NUM_BINS)]
    return values + [-v for v in values[1:]]


def tv_geometric(op: str, m: float):
    if op == "ShearX":
        shear = [math.degrees(math.atan(m)), 0.0]
        return lambda i: TF.affine(i, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                                   interpolation=NEAREST, center=[0, 0])
    if op == "ShearY":
        shear = [0.0, math.degrees(math.atan(m))]
        return lambda i: TF.affine(i, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                                   interpolation=NEAREST, center=[0, 0])
    if op in ("TranslateX", "TranslateY"):
        shift = [int(m), 0] if op == "TranslateX" else [0, int(m)]
        return lambda i: TF.affine(i, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                                   interpolation=NEAREST)
    return lambda i: TF.rotate(i, m, interpolation=NEAREST)


@pytest.mark.parametrize("op", A.GEOMETRIC)
def test_geometric_op_equals_torchvision(op):
    x = coordinates()
    for m in signed_bins(op):
        got = O.geometric(x, op, torch.full((len(x),), m))
        assert torch.equal(got, per_image(tv_geometric(op, m), x)), (op, m)


def test_geometric_ops_take_one_magnitude_per_image():
    x = images(n=4)
    m = torch.tensor(signed_bins("Rotate")[: len(x)])
    got = O.geometric(x, "Rotate", m)
    want = torch.stack([TF.rotate(i, float(v), interpolation=NEAREST)
                        for i, v in zip(x, m, strict=True)])
    assert torch.equal(got, want)


BLENDS = {
    "Brightness": (O.brightness, TF.adjust_brightness),
    "Color": (O.color, TF.adjust_saturation),
    "Contrast": (O.contrast, TF.adjust_contrast),
    "Sharpness": (O.sharpness, TF.adjust_sharpness),
}


@pytest.mark.parametrize("op", A.BLENDS)
def test_blend_op_equals_torchvision(op):
    ours, tv = BLENDS[op]
    x = images()
    factors = [1.0 + m for m in signed_bins(op)]
    for f in factors:
        got = ours(x, torch.full((len(x),), f, dtype=torch.float64))
        assert torch.equal(got, per_image(lambda i, f=f: tv(i, f), x)), (op, f)
    mixed = torch.tensor(factors * 2, dtype=torch.float64)[: len(x)]  # one factor per image
    want = torch.stack([tv(i, float(f)) for i, f in zip(x, mixed, strict=True)])
    assert torch.equal(ours(x, mixed), want)


def test_pixel_ops_equal_torchvision():
    x = images()
    n = len(x)
    for level in range(A.NUM_BINS):
        bits = int(A.magnitude("Posterize", level, 32, 32))
        assert torch.equal(O.posterize(x, torch.full((n,), bits)), TF.posterize(x, bits))
        thr = A.magnitude("Solarize", level, 32, 32)
        assert torch.equal(O.solarize(x, torch.full((n,), thr)), TF.solarize(x, thr))
    assert torch.equal(O.invert(x), TF.invert(x))
    assert torch.equal(O.solarize(x, torch.zeros(n)), TF.invert(x))  # how the policy inverts
    assert torch.equal(O.autocontrast(x), per_image(TF.autocontrast, x))
    assert torch.equal(O.equalize(x), per_image(TF.equalize, x))
    flat = torch.full((2, 3, 8, 8), 9, dtype=torch.uint8)  # a single level: left as it is
    assert torch.equal(O.equalize(flat), flat) and torch.equal(O.autocontrast(flat), flat)


# ----------------------------------------------------------------------------- the batch policy


def tv_op(op: str, m: float):
    """The torchvision call AutoAugment makes for one (op, signed magnitude)."""
    if op in A.GEOMETRIC:
        return tv_geometric(op, m)
    blend = {"Brightness": TF.adjust_brightness, "Color": TF.adjust_saturation,
             "Contrast": TF.adjust_contrast, "Sharpness": TF.adjust_sharpness}
    if op in blend:
        return lambda i: blend[op](i, 1.0 + m)
    return {"Posterize": lambda i: TF.posterize(i, int(m)),
            "Solarize": lambda i: TF.solarize(i, m),
            "AutoContrast": TF.autocontrast, "Equalize": TF.equalize, "Invert": TF.invert}[op]


def test_batch_equals_torchvision_per_image_with_the_same_choices():
    x = images(n=100)  # 300 images: every sub-policy several times
    aug = A.AutoAugment()
    out = aug(x, torch.Generator().manual_seed(7))
    d = aug.draw(len(x), torch.Generator().manual_seed(7))
    assert set(d.subpolicy.tolist()) == set(range(25)) and 0.3 < d.applied.float().mean() < 0.8
    for i, img in enumerate(x):
        for slot in range(2):
            if d.applied[i, slot]:
                img = tv_op(A.OPS[int(d.op[i, slot])], float(d.magnitude[i, slot]))(img)
        assert torch.equal(out[i], img), (i, A.CIFAR10_POLICY[int(d.subpolicy[i])])


def test_policy_frequencies():
    n, subs = 50_000, len(A.CIFAR10_POLICY)
    d = A.AutoAugment().draw(n, torch.Generator().manual_seed(0))
    counts = torch.bincount(d.subpolicy, minlength=subs).double()
    chi2 = float(((counts - n / subs) ** 2 / (n / subs)).sum())
    assert chi2 < 51.18  # chi-square, 24 degrees of freedom, p = 0.001
    for s, sub in enumerate(A.CIFAR10_POLICY):
        rows = d.subpolicy == s
        k = int(rows.sum())
        for slot, (op, p, _) in enumerate(sub):
            applied = int(d.applied[rows, slot].sum())
            assert abs(applied - k * p) <= 4 * math.sqrt(k * p * (1 - p)) + 1e-9, (s, slot)
            assert (d.op[rows, slot] == A.OPS.index(op)).all()
            negative = int((d.magnitude[rows, slot] < 0).sum())
            if op in A.SIGNED and A.magnitude(op, sub[slot][2], 32, 32) > 0:
                assert abs(negative - k / 2) <= 4 * math.sqrt(k / 4), (s, slot)
            else:
                assert negative == 0
    # the two coins of an image are independent
    both = (d.applied[:, 0] & d.applied[:, 1]).double().mean()
    probs = torch.tensor([[p for _, p, _ in sub] for sub in A.CIFAR10_POLICY])
    expected = float((probs[:, 0] * probs[:, 1]).mean())
    assert abs(float(both) - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_same_seed_same_output_on_the_batch_device(device):
    x = images(n=20).to(device)
    aug = A.AutoAugment()
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.device == x.device and a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, images(n=20).to(device))  # input untouched
    if device.type != "cpu":  # same choices, same ops: the CPU result up to float rounding
        cpu = aug(x.cpu(), torch.Generator().manual_seed(1))
        assert (a.cpu().int() - cpu.int()).abs().le(1).float().mean() > 0.999


# ----------------------------------------------------------------------------- crop, flip, cutout


@pytest.mark.parametrize("flip", [True, False])
def test_crop_flip_is_the_drawn_crop_and_mirror(flip):
    n, pad = 64, 4
    x = images(n=n // 3 + 1)[:n]
    out = A.crop_flip(x, torch.Generator().manual_seed(5), flip)
    g = torch.Generator().manual_seed(5)
    oy, ox = (torch.randint(0, 2 * pad + 1, (n,), generator=g).tolist() for _ in range(2))
    mirror = (torch.rand(n, generator=g) < 0.5).tolist() if flip else [False] * n
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    for i in range(n):
        want = padded[i, :, oy[i] : oy[i] + 32, ox[i] : ox[i] + 32]
        assert torch.equal(out[i], want.flip(2) if mirror[i] else want), i
    assert 0 < sum(mirror) < n or not flip




@pytest.mark.parametrize("size", [16, 8, 5])
def test_cutout_zeroes_exactly_a_clipped_square(size):
    n, h, w = 400, 32, 32
    x = torch.rand(n, 3, h, w) + 1.0  # never 0 before cutout
    out = A.cutout(x, torch.Generator().manual_seed(3), size)
    g = torch.Generator().manual_seed(3)
    cy = torch.randint(0, h, (n, 1), generator=g).flatten().tolist()
    cx = torch.randint(0, w, (n, 1), generator=g).flatten().tolist()
    clipped = 0
    for i in range(n):
        top, left = cy[i] - size // 2, cx[i] - size // 2
        want = torch.zeros(h, w, dtype=torch.bool)
        want[max(top, 0) : min(top + size, h), max(left, 0) : min(left + size, w)] = True
        clipped += int(want.sum()) < size * size
        hole = (out[i] == 0).all(0)
        assert torch.equal(hole, want), i
        assert torch.equal(out[i][:, ~hole], x[i][:, ~hole])
    assert 0 < clipped < n
    assert set(cy) == set(range(h)) and set(cx) == set(range(w))  # centre anywhere, uniformly


# ----------------------------------------------------------------------------- the pipeline


def tiny_dataset(n: int = 24) -> LTDataset:
    x = images(n=n // 3)
    split = Split(labels=np.arange(len(x), dtype=np.int64) % 4, images=x)
    return LTDataset(name="tiny", num_classes=4, train=split, meta=split, val=split, test=split,
                     mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), image_size=32)


@pytest.fixture
def deterministic():
    """As the Trainer runs (deterministic algorithms): no op may refuse or warn."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_cifar_recipe_is_crop_flip_autoaugment_normalise_cutout(device, deterministic):
    ds = tiny_dataset()
    full = TensorBatches(ds.train, ds, 24, shuffle=False, augment="autoaugment_cutout",
                         device=device, cutout_size=12)
    ((x, _),) = list(full.epoch(torch.Generator().manual_seed(4)))
    g = torch.Generator().manual_seed(4)
    raw = ds.train.images.to(device)
    want = A.cutout(full.normalize(A.AutoAugment()(A.crop_flip(raw, g, True), g)), g, 12)
    assert x.device.type == device.type and torch.equal(x, want)
    plain = TensorBatches(ds.train, ds, 24, shuffle=False, augment="autoaugment", device=device)
    ((y, _),) = list(plain.epoch(torch.Generator().manual_seed(4)))
    assert not (y == 0).all(1).any()  # no Cutout hole without _cutout
    g = torch.Generator().manual_seed(4)
    assert torch.equal(y, full.normalize(A.AutoAugment()(A.crop_flip(raw, g, True), g)))


def test_the_augment_names_are_the_config_s_for_both_keys():
    from typing import get_args

    from dnet_tune.config import Augment

    assert get_args(Augment) == A.AUGMENTS and "autoaugment_cutout" in A.AUGMENTS
    for name in A.AUGMENTS:
        cfg = config_from_dict({"data": {"augment": name}, "stage2": {"augment": name}})
        assert cfg.data.augment == cfg.stage2.augment == name
    for key in ("data", "stage2"):
        with pytest.raises(UserError, match=f"'{key}.augment' must be"):
            config_from_dict({key: {"augment": "mixup"}})


def test_config_and_recipes():
    assert dataset_recipe("cifar10_lt")["data"]["augment"] == "autoaugment_cutout"
    assert dataset_recipe("cifar100_lt")["data"]["augment"] == "autoaugment_cutout"
    cfg = config_from_dict({"data": {"augment": "autoaugment_cutout", "cutout_size": 8}})
    assert cfg.data.cutout_size == 8
    with pytest.raises(UserError, match="cutout_size"):
        config_from_dict({"data": {"cutout_size": 0}})
    ds = tiny_dataset()
    files = Split(labels=np.zeros(1, np.int64), paths=["/nonexistent.jpg"])
    with pytest.raises(UserError, match="in-memory"):
        FileBatches(files, ds, 1, shuffle=True, augment="autoaugment_cutout",
                    device=torch.device("cpu"))


def test_host_threads_is_one_thread_on_the_cpu_only_and_restores():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with A.host_threads(torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(KeyError), A.host_threads(torch.device("cpu")):
            raise KeyError
        assert torch.get_num_threads() == 2
        with A.host_threads(torch.device("cuda")):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
