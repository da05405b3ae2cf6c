"""The file datasets' recipe as batch ops: RandomResizedCrop, h-flip, ColorJitter(0.4, 0.4, 0.4).

Why: torchvision's transforms take one PIL image at a time in DataLoader workers; on a GPU that
keeps decoding and augmentation on the host and makes them, not the model, the bottleneck. Here
the random parameters are drawn per image (a few numbers), the crop+resize is one interpolation
per image, and flip, jitter and normalisation run on the whole uint8 batch on its device.

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


def resized_crop(img: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    crop = img[:, box.top : box.top + box.height, box.left : box.left + box.width]
    return resize(crop, size, size)


def eval_image(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize(round(size·256/224)) + CenterCrop(size), the eval transform of the PIL path."""
    h, w = img.shape[-2:]
    nh, nw = resize_shorter(h, w, round(size * 256 / 224))
    out = resize(img, nh, nw)
    box = center_box(nh, nw, size)
    return out[:, box.top : box.top + size, box.left : box.left + size]


def hflip(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror the images of a uint8 NCHW batch where `flips` (bool, N) is set."""
    if bool(flips.any()):
        x = x.clone()
        x[flips] = x[flips].flip(-1)
    return x


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's `_blend` per image: (f·a + (1−f)·b) clamped, truncated to uint8.

    f and 1−f are formed in float64 and rounded to float32, as torch does with the Python float
    that torchvision passes, so the result equals the per-image op bit for bit.
    """
    f = factor.view(-1, 1, 1, 1)
    out = f.float() * a + (1.0 - f).float() * b
    return out.clamp_(0, 255).to(torch.uint8)


def grey(x: torch.Tensor) -> torch.Tensor:
    """torchvision's rgb_to_grayscale on uint8 NCHW: weighted sum truncated to uint8, N1HW."""
    r, g, b = x.unbind(1)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).to(torch.uint8).unsqueeze(1)


def brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros((), device=x.device), f)


def contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    # grey levels are integers and their sum stays below 2**24, so the float32 mean is exact
    # whatever order the batch reduction sums in
    mean = grey(x).float().mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, f)


def saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, grey(x), f)


_OPS = {BRIGHTNESS: brightness, CONTRAST: contrast, SATURATION: saturation}


def color_jitter(x: torch.Tensor, order: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """ColorJitter per image on a uint8 NCHW batch: step k applies each image's k-th op.

    `order` (N×4 int) and `factors` (N×3 float64: brightness, contrast, saturation) are the
    drawn parameters, on `x`'s device. Images are grouped by the op they take at each step.
    """
    x = x.clone()
    for k in range(4):
        for fn, op in _OPS.items():
            idx = (order[:, k] == fn).nonzero().flatten()
            if idx.numel():
                x[idx] = op(x[idx], factors[idx, fn])
    return x


def train_batch(crops: torch.Tensor, params: list[TrainParams]) -> torch.Tensor:
    """Flip and jitter of a uint8 batch of already cropped images (on any device)."""
    dev = crops.device
    flips = torch.tensor([p.flip for p in params], device=dev)
    order = torch.tensor([p.order for p in params], dtype=torch.int64, device=dev)
    factors = torch.tensor([p.factors for p in params], dtype=torch.float64, device=dev)
    return color_jitter(hflip(crops, flips), order, factors)
