"""The file datasets' recipe as batch ops: RandomResizedCrop, h-flip, ColorJitter(0.4, 0.4, 0.4).

Why: torchvision's transforms take one PIL image at a time in DataLoader workers; on a GPU that
keeps decoding and augmentation on the host and makes them, not the model, the bottleneck. Here
the random parameters are drawn per image (a few numbers), the crop+resize is one interpolation
(and mirror) per image, and the jitter and normalisation run on the whole batch on its device.

Parameters: `draw_train` draws, from a `torch.Generator` seeded with the item's seed, exactly the
numbers torchvision's `Compose([RandomResizedCrop, RandomHorizontalFlip, ColorJitter])` draws from
the global RNG, in the same order (scale and log-ratio per try with the 10-try fallback to a
central crop, then the flip coin, then the jitter order and factors). So a seed gives the same
crop box, flip and jitter as the PIL path under `torch.manual_seed(seed)` (tests check it), and
the distribution is torchvision's by construction.

Pixels: the crop is resized with `F.interpolate(bilinear, antialias=True)` on uint8, as
torchvision's tensor `resized_crop` (v2) does; the jitter ops are torchvision's tensor ops on uint8
(each op's result truncated to uint8, as `_blend` does), equal to them bit for bit. Against the
PIL path the pixels differ slightly: PIL's antialiased bilinear resize and its `ImageEnhance`
blends round differently (a few grey levels on some pixels; measured in the tests).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER = 0.4  # brightness, contrast and saturation factors uniform in [0.6, 1.4]; no hue
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)  # torchvision's ColorJitter fn ids
_GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


class Box(NamedTuple):
    top: int
    left: int
    height: int
    width: int


class TrainParams(NamedTuple):
    box: Box
    flip: bool
    order: tuple[int, ...]  # a permutation of the four fn ids; HUE is a no-op (hue=0)
    factors: tuple[float, float, float]  # brightness, contrast, saturation


def item_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return torch.empty(1).uniform_(low, high, generator=gen).item()


def crop_box(gen: torch.Generator, height: int, width: int) -> Box:
    """torchvision's RandomResizedCrop.get_params(scale=(0.08, 1), ratio=(3/4, 4/3))."""
    area = height * width
    log_ratio = torch.log(torch.tensor(RATIO))
    lo, hi = float(log_ratio[0]), float(log_ratio[1])
    for _ in range(10):
        target_area = area * _uniform(gen, *SCALE)
        aspect = torch.exp(torch.empty(1).uniform_(lo, hi, generator=gen)).item()  # float32
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen).item())
            return Box(top, left, h, w)
    in_ratio = width / height  # after 10 misses: the central crop of the nearest allowed ratio
    if in_ratio < min(RATIO):
        w, h = width, round(width / min(RATIO))
    elif in_ratio > max(RATIO):
        w, h = round(height * max(RATIO)), height
    else:
        w, h = width, height
    return Box((height - h) // 2, (width - w) // 2, h, w)


def draw_train(gen: torch.Generator, height: int, width: int) -> TrainParams:
    """One image's parameters, drawn in the order torchvision's Compose draws them."""
    box = crop_box(gen, height, width)
    flip = bool(torch.rand(1, generator=gen).item() < 0.5)
    order = tuple(torch.randperm(4, generator=gen).tolist())
    lo, hi = max(0.0, 1 - JITTER), 1 + JITTER
    b, c, s = (float(torch.empty(1).uniform_(lo, hi, generator=gen)) for _ in range(3))
    return TrainParams(box, flip, order, (b, c, s))


def resize_shorter(height: int, width: int, short: int) -> tuple[int, int]:
    """Output (height, width) of torchvision's Resize(short) on a height×width image."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def center_box(height: int, width: int, size: int) -> Box:
    """torchvision's CenterCrop(size) box (no padding: callers crop resized images >= size)."""
    return Box(round((height - size) / 2.0), round((width - size) / 2.0), size, size)


def resize(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """CHW uint8 → bilinear antialiased uint8, as torchvision's v2 tensor resize."""
    x = img.unsqueeze(0)
    if x.device.type == "cpu":  # torch's uint8 antialias kernel: rounds once, in C
        out = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True,
                            align_corners=False)
    else:
        out = F.interpolate(x.float(), size=(height, width), mode="bilinear", antialias=True,
                            align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
    return out[0]


def resized_crop(img: torch.Tensor, box: Box, size: int, flip: bool = False) -> torch.Tensor:
    """The box resized to size×size, then mirrored if `flip` (per image: a copy of 150 KB, where
    a masked flip of the stacked batch costs an index and an index_put of the whole batch)."""
    crop = img[:, box.top : box.top + box.height, box.left : box.left + box.width]
    out = resize(crop, size, size)
    return out.flip(-1) if flip else out


def eval_image(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize(round(size·256/224)) + CenterCrop(size), the eval transform of the PIL path."""
    h, w = img.shape[-2:]
    nh, nw = resize_shorter(h, w, round(size * 256 / 224))
    out = resize(img, nh, nw)
    box = center_box(nh, nw, size)
    return out[:, box.top : box.top + size, box.left : box.left + size]


def grey(x: torch.Tensor, tmp: torch.Tensor | None = None) -> torch.Tensor:
    """torchvision's rgb_to_grayscale of an integer-valued float NCHW batch (truncated), N1HW.

    Same float32 products and sums as torchvision's, in place where it can (`tmp`: a N1HW
    scratch buffer); values are >= 0, so floor is the truncation (torch vectorises floor, not
    trunc).
    """
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    tmp = torch.empty_like(r) if tmp is None else tmp
    out = r * _GREY[0]
    out.add_(torch.mul(g, _GREY[1], out=tmp))
    out.add_(torch.mul(b, _GREY[2], out=tmp))
    return out.floor_()


def color_jitter(x: torch.Tensor, order: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """ColorJitter per image on a uint8 NCHW batch, equal to torchvision's tensor ops.

    `order` (N×4 int, fn ids) and `factors` (N×3 float64: brightness, contrast, saturation) are
    the drawn parameters, on `x`'s device. Each of torchvision's ops is a blend
    `f·x + (1−f)·t` clamped to [0, 255] and truncated to uint8, with t = 0 (brightness), the mean
    of the grey image (contrast) or the grey image (saturation). So step k of all images is one
    blend of the batch: per image its k-th op's f and u = (1−f)·t (f = 1, u = 0 for hue: an
    exact no-op). u is formed as grey·a + b with a = (1−f)·[saturation] and
    b = (1−f)·mean·[contrast], where multiplying by 1 or 0 and adding 0 are exact, so u is the
    product torchvision forms. The image stays float32 between steps and is truncated as uint8
    would be (values are integers and >= 0: `floor_`); f and 1−f are formed in float64 and
    rounded to float32, as torch does with the Python float that torchvision passes; a sum of
    grey levels stays below 2**24, so the float32 mean is exact in any summation order.
    """
    x = x.float()
    n = x.shape[0]
    ones = torch.ones(n, 1, dtype=torch.float64, device=x.device)
    table = torch.cat([factors, ones], dim=1)  # by fn id; HUE → 1
    tmp: torch.Tensor | None = None
    for k in range(4):
        fn = order[:, k]
        if bool((fn == HUE).all()):
            continue
        f64 = table.gather(1, fn.view(-1, 1)).view(-1, 1, 1, 1)
        f, one_minus_f = f64.float(), (1.0 - f64).float()
        con = (fn == CONTRAST).view(-1, 1, 1, 1).float()
        sat = (fn == SATURATION).view(-1, 1, 1, 1).float()
        if bool((con + sat).any()):
            tmp = torch.empty_like(x[:, :1]) if tmp is None else tmp
            u = grey(x, tmp)
            mean = u.mean(dim=(1, 2, 3), keepdim=True)
            u.mul_(one_minus_f * sat).add_(one_minus_f * mean * con)
            x.mul_(f).add_(u)
        else:  # brightness only: torchvision adds (1 − f)·0
            x.mul_(f)
        x.clamp_(0, 255).floor_()
    return x.to(torch.uint8)


def jitter_image(img: torch.Tensor, order: tuple[int, ...],
                 factors: tuple[float, float, float]) -> torch.Tensor:
    """ColorJitter of one CHW uint8 image: the CPU form of `color_jitter`, equal to it (and to
    torchvision's tensor ops) bit for bit.

    Why a second form: on a CPU the batch form makes every image pay for every kind of op at
    each step (a grey image where only brightness is due, a full blend where contrast adds a
    constant), over chunks larger than a core's cache. Here each op does only its own work on a
    224-px float32 image (600 KB) that stays in cache across its ~16 passes, and the last op is
    truncated by the uint8 cast alone: 0.35 against 0.46 ms per image on one core
    (bench/file_stages.py, docs/benchmarks.md). The same float32 operations in the same order
    as `color_jitter`: f and 1−f are rounded to float32 from float64, as there.
    """
    x = img.float()
    batch = x.unsqueeze(0)  # a view: `grey` reads NCHW
    tmp = torch.empty_like(batch[:, :1])
    ops = [fn for fn in order if fn != HUE]
    for k, fn in enumerate(ops):
        f = torch.tensor(factors[fn], dtype=torch.float32)
        one_minus_f = torch.tensor(1.0 - factors[fn], dtype=torch.float32)
        if fn == BRIGHTNESS:  # torchvision adds (1 − f)·0
            x.mul_(f)
        elif fn == CONTRAST:  # (1 − f)·mean of the truncated grey image, one number
            u = one_minus_f * grey(batch, tmp).mean()  # of x before this op changes it
            x.mul_(f).add_(u)
        else:  # SATURATION: (1 − f)·grey, per pixel
            u = grey(batch, tmp)[0].mul_(one_minus_f)
            x.mul_(f).add_(u)
        x.clamp_(0, 255)
        if k < len(ops) - 1:  # the next op reads the uint8 image torchvision would have made
            x.floor_()
    return x.to(torch.uint8)


def train_batch(images: list[torch.Tensor], params: list[TrainParams], size: int) -> torch.Tensor:
    """The recipe on decoded CHW uint8 images (any device) → a uint8 N×3×size×size batch.

    On the CPU each image is cropped, resized and jittered in turn (`jitter_image`) and
    written into its slot of the batch, so it stays in cache from crop to slot. On a GPU the
    crops are stacked and jittered as one batch (`color_jitter`): there the cost is the number
    of kernels, not the passes.
    """
    if not images or images[0].device.type == "cpu":
        out = torch.empty(len(images), 3, size, size, dtype=torch.uint8)
        for k, (img, p) in enumerate(zip(images, params, strict=True)):
            out[k] = jitter_image(resized_crop(img, p.box, size, p.flip), p.order, p.factors)
        return out
    crops = torch.stack([resized_crop(img, p.box, size, p.flip)
                         for img, p in zip(images, params, strict=True)])
    dev = crops.device
    order = torch.tensor([p.order for p in params], dtype=torch.int64, device=dev)
    factors = torch.tensor([p.factors for p in params], dtype=torch.float64, device=dev)
    return color_jitter(crops, order, factors)
