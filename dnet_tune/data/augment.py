"""Batch augmentation on the batch's device: crop+flip, AutoAugment (CIFAR-10 policy), Cutout.

Why batch ops: torchvision's AutoAugment transforms one image at a time, so the in-memory CIFAR
batches used to leave the device, run per image on the host and come back; on a GPU that made
augmentation, not the model, the bottleneck. Here every op takes a whole group of images at once
and stays on the images' device.

Why not Kornia (0.9.0, checked for this module; numbers in docs/benchmarks.md): its AutoAugment
picks one sub-policy per call, i.e. per batch, where the policy is defined per image; its
parameters come from torch's global RNG with no way to pass a `torch.Generator` (a `generator=`
argument is refused), and our runs must replay exactly from their own generator; and its ops are
not torchvision's (magnitudes sampled within a bin instead of the bin's value, shear scaled to
degrees without atan, a different contrast and sharpness: up to 79 and 104 grey levels apart from
`torchvision.transforms.v2.functional` on uint8 images).

Semantics: every op works on uint8 images (before normalisation) and equals the same op of
`torchvision.transforms.v2.functional` on the same image and magnitude, as AutoAugment calls it
(nearest interpolation, fill 0); tests/data/test_augment.py checks each one. To be bit-exact where
the output is truncated to uint8, the float arithmetic runs in the same order and precision as
torchvision's (float32, factors and 1 - factor rounded from float64).

Randomness: only parameters are random (a few numbers per image); they are drawn on the CPU from
the caller's generator and moved to the device, so the same generator gives the same batch on
any device and the global RNG is never touched. The per-image choices are those of torchvision's
AutoAugment: a sub-policy uniformly, an apply coin per op (apply if coin <= p) and a sign per
signed op. Images are then grouped by op and each group is transformed as one batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F

AUGMENTS = ("none", "crop_flip", "autoaugment", "autoaugment_cutout")
NUM_BINS = 10

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
BLENDS = ("Brightness", "Color", "Contrast", "Sharpness")
OPS = (*GEOMETRIC, *BLENDS, "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")
SIGNED = frozenset((*GEOMETRIC, *BLENDS))

SubPolicy = tuple[tuple[str, float, int | None], tuple[str, float, int | None]]

# Cubuk et al. (2019), AutoAugment, the CIFAR-10 policy: (op, probability, magnitude bin) pairs,
# as torchvision's AutoAugmentPolicy.CIFAR10 lists them (a test checks that they agree).
CIFAR10_POLICY: tuple[SubPolicy, ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)


def magnitude(op: str, level: int | None, height: int, width: int) -> float:
    """The value of bin `level` of the op's 10-bin scale (unsigned), as torchvision defines it.

    The bins are float32 values because the comparisons and truncations downstream see them: the
    Solarize threshold of bin 3 is exactly 170, so a pixel of 170 is inverted.
    """
    if level is None:
        return 0.0

    def lin(lo: float, hi: float) -> float:
        return float(torch.linspace(lo, hi, NUM_BINS)[level])

    scales = {"ShearX": (0.0, 0.3), "ShearY": (0.0, 0.3), "Rotate": (0.0, 30.0),
              "TranslateX": (0.0, 150.0 / 331.0 * width),
              "TranslateY": (0.0, 150.0 / 331.0 * height), "Solarize": (255.0, 0.0)}
    if op in scales:
        return lin(*scales[op])
    if op in BLENDS:
        return lin(0.0, 0.9)
    if op == "Posterize":
        return float(8 - round(level / ((NUM_BINS - 1) / 4)))
    return 0.0


# ----------------------------------------------------------------------------- crop, flip, cutout


def crop_flip(x: torch.Tensor, gen: torch.Generator | None, flip: bool) -> torch.Tensor:
    """Random crop after zero padding (4 px at 32 px, scaled as max(1, size//8)) + h-flip.

    One gather with a per-image index (offset and mirrored columns folded in): advanced indexing
    over three broadcast index tensors was 4x slower on the CPU.
    """
    b, c, hgt, wid = x.shape
    pad = max(1, hgt // 8)
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=gen).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=gen).to(dev)
    cols = torch.arange(wid, device=dev).expand(b, 1, wid)
    if flip:
        mirror = (torch.rand(b, 1, 1, generator=gen) < 0.5).to(dev)
        cols = torch.where(mirror, cols.flip(2), cols)
    rows = torch.arange(hgt, device=dev)[:, None]
    index = (oy + rows) * (wid + 2 * pad) + ox + cols  # (b, hgt, wid) into the padded image
    padded = F.pad(x, (pad, pad, pad, pad)).view(b, c, -1)
    return padded.gather(2, index.view(b, 1, -1).expand(b, c, -1)).view(b, c, hgt, wid)


def cutout(x: torch.Tensor, gen: torch.Generator | None, size: int) -> torch.Tensor:
    """One `size`×`size` square per image zeroed, centre uniform, clipped at the border.

    Called after normalisation, so the hole is the mean colour, as in DeVries & Taylor's code.
    """
    b, _, hgt, wid = x.shape
    cy = torch.randint(0, hgt, (b, 1), generator=gen).to(x.device)
    cx = torch.randint(0, wid, (b, 1), generator=gen).to(x.device)
    top, left = cy - size // 2, cx - size // 2
    ar_h = torch.arange(hgt, device=x.device)[None]
    ar_w = torch.arange(wid, device=x.device)[None]
    in_rows = (ar_h >= top) & (ar_h < top + size)
    in_cols = (ar_w >= left) & (ar_w < left + size)
    return x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)


# ----------------------------------------------------------------------------- geometric ops


@lru_cache(maxsize=8)
def _base_grid(hgt: int, wid: int, device: torch.device) -> torch.Tensor:
    """Output pixel centres in pixels from the image centre, with a 1 for the translation."""
    xs = torch.linspace(-wid * 0.5 + 0.5, wid * 0.5 - 0.5, wid, device=device)
    ys = torch.linspace(-hgt * 0.5 + 0.5, hgt * 0.5 - 0.5, hgt, device=device)
    grid = torch.empty(1, hgt, wid, 3, device=device)
    grid[..., 0] = xs
    grid[..., 1] = ys[:, None]
    grid[..., 2] = 1.0
    return grid.view(1, hgt * wid, 3)


def affine_nearest(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample with nearest neighbour and fill 0; `theta` (N, 2, 3) maps each output pixel
    (centred coordinates) to its source pixel, as torchvision's inverse affine matrix does."""
    n, _, hgt, wid = x.shape
    scale = torch.tensor([0.5 * wid, 0.5 * hgt], device=x.device)
    rescaled = theta.to(x.device, torch.float32).transpose(1, 2) / scale
    grid = _base_grid(hgt, wid, x.device).expand(n, -1, -1).bmm(rescaled).view(n, hgt, wid, 2)
    out = F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros",
                        align_corners=False)
    return out.round_().to(x.dtype)


def geometric_theta(op: str, m: torch.Tensor, hgt: int, wid: int) -> torch.Tensor:
    """(N, 2, 3) inverse matrices for signed magnitudes `m` (float64, CPU).

    Shears act about the top-left corner and translations move by whole pixels (truncated
    toward zero), as AutoAugment in torchvision calls `affine`; Rotate turns about the centre.
    """
    theta = torch.zeros(len(m), 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    if op == "ShearX":
        theta[:, 0, 1] = m
        theta[:, 0, 2] = m * (hgt * 0.5)
    elif op == "ShearY":
        theta[:, 1, 0] = m
        theta[:, 1, 2] = m * (wid * 0.5)
    elif op == "TranslateX":
        theta[:, 0, 2] = -m.trunc()
    elif op == "TranslateY":
        theta[:, 1, 2] = -m.trunc()
    elif op == "Rotate":
        rad = m * (math.pi / 180.0)
        cos, sin = rad.cos(), rad.sin()
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    else:
        raise ValueError(f"{op} is not a geometric op")
    return theta.float()


def geometric(x: torch.Tensor, op: str, m: torch.Tensor) -> torch.Tensor:
    """ShearX/Y (shear factor), TranslateX/Y (pixels), Rotate (degrees) with per-image `m`."""
    return affine_nearest(x, geometric_theta(op, m.double().cpu(), *x.shape[-2:]))


# ----------------------------------------------------------------------------- colour and pixel ops


def _factors(f: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, 1 − f) as float32 (N, 1, 1, 1), 1 − f taken in float64 first as torchvision does."""
    f = f.to(torch.float64)
    pair = torch.stack([f, 1.0 - f]).to(device, torch.float32).view(2, -1, 1, 1, 1)
    return pair[0], pair[1]


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """x·f + other·(1 − f) with the second product fused into the sum (torchvision's rounding)."""
    ratio, rest = _factors(f, x.device)
    return torch.addcmul(x.mul(ratio), other, rest).clamp_(0, 255).to(torch.uint8)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma as torchvision's uint8 path computes it: float weights, then floored."""
    if x.shape[1] == 1:
        return x.float()
    r, g, b = x.unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(1)


def brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    ratio, _ = _factors(f, x.device)
    return x.mul(ratio).clamp_(0, 255).to(torch.uint8)


def color(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Saturation: blend with the grey image (a grey image is its own grey, so unchanged)."""
    return x.clone() if x.shape[1] == 1 else _blend(x, _grey(x), f)


def contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grey(x).mean(dim=(-3, -2, -1), keepdim=True), f)


def sharpness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with a 3×3 smoothed image (centre weight 5/13) whose border pixels are unchanged."""
    n, c, hgt, wid = x.shape
    if hgt <= 2 or wid <= 2:
        return x.clone()
    kernel = torch.full((3, 3), 1.0 / 13.0, device=x.device)
    kernel[1, 1] = 5.0 / 13.0
    smooth = x.float()
    inner = F.conv2d(smooth.view(n * c, 1, hgt, wid), kernel.view(1, 1, 3, 3)).round_()
    smooth[..., 1:-1, 1:-1] = inner.view(n, c, hgt - 2, wid - 2)
    _, rest = _factors(f, x.device)
    xf = x.float()
    # x + (1 − f)·(smooth − x), fused: torchvision's form here, which rounds unlike `_blend`
    return torch.addcmul(xf, smooth.sub_(xf), rest).clamp_(0, 255).to(torch.uint8)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` bits of each channel value."""
    shift = (8 - bits.to(torch.int64)).to(x.device)
    mask = ((255 << shift) & 255).to(torch.uint8).view(-1, 1, 1, 1)
    return x & mask


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert every value >= threshold (threshold 0 inverts the whole image)."""
    thr = threshold.to(x.device, torch.float32).view(-1, 1, 1, 1)
    return torch.where(x >= thr, 255 - x, x)


def invert(x: torch.Tensor) -> torch.Tensor:
    return 255 - x


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel to 0..255; a constant channel is left as it is."""
    xf = x.float()
    lo = xf.amin(dim=(-2, -1), keepdim=True)
    hi = xf.amax(dim=(-2, -1), keepdim=True)
    flat = hi == lo
    inv_scale = (hi - lo).mul_(1.0 / 255.0).masked_fill_(flat, 1.0)
    lo = lo.masked_fill_(flat, 0.0)
    return xf.sub_(lo).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram equalisation with PIL's integer lookup table.

    The table spreads the pixels below the brightest occupied level evenly over 0..255; with a
    single occupied level (step 0) the channel is left unchanged.
    """
    n, c, hgt, wid = x.shape
    flat = x.reshape(n * c, hgt * wid).long()
    hist = torch.zeros(n * c, 256, dtype=torch.int64, device=x.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    levels = torch.arange(256, device=x.device)
    top = torch.where(hist > 0, levels, -1).amax(dim=1, keepdim=True)
    step = (hgt * wid - hist.gather(1, top)) // 255
    below = hist.cumsum(1) - hist  # pixels at lower levels
    lut = ((below + step // 2) // step.clamp(min=1)).clamp_(max=255)
    lut = torch.where(step > 0, lut, levels)
    return lut.gather(1, flat).to(torch.uint8).view(n, c, hgt, wid)


# ----------------------------------------------------------------------------- the policy


class Draw(NamedTuple):
    """One batch's random choices (CPU): all (N,) except the (N, 2) per-op columns."""

    subpolicy: torch.Tensor
    coins: torch.Tensor
    signs: torch.Tensor
    op: torch.Tensor  # index into OPS
    applied: torch.Tensor
    magnitude: torch.Tensor  # float64, signed


class AutoAugment:
    """AutoAugment for batches of uint8 images: per-image choices, ops applied per group."""

    def __init__(self, policy: tuple[SubPolicy, ...] = CIFAR10_POLICY, height: int = 32,
                 width: int = 32) -> None:
        self.policy = policy
        self.height, self.width = height, width
        self.op = torch.tensor([[OPS.index(op) for op, _, _ in sub] for sub in policy])
        self.prob = torch.tensor([[p for _, p, _ in sub] for sub in policy])
        self.magnitude = torch.tensor(
            [[magnitude(op, lv, height, width) for op, _, lv in sub] for sub in policy],
            dtype=torch.float64)
        self.signed = torch.tensor([[op in SIGNED for op, _, _ in sub] for sub in policy])

    def draw(self, n: int, gen: torch.Generator | None) -> Draw:
        """torchvision's choices per image: sub-policy, apply coins (coin <= p), signs (0: −)."""
        sub = torch.randint(len(self.policy), (n,), generator=gen)
        coins = torch.rand(n, 2, generator=gen)
        signs = torch.randint(2, (n, 2), generator=gen)
        negate = self.signed[sub] & (signs == 0)
        mag = torch.where(negate, -self.magnitude[sub], self.magnitude[sub])
        return Draw(sub, coins, signs, self.op[sub], coins <= self.prob[sub], mag)

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if x.shape[-2:] != (self.height, self.width):
            raise ValueError(f"images are {tuple(x.shape[-2:])}, the policy was built for "
                             f"{(self.height, self.width)}")
        d = self.draw(len(x), gen)
        out = x.clone()
        for slot in range(2):
            self._apply(out, d.op[:, slot], d.applied[:, slot], d.magnitude[:, slot])
        return out

    def _apply(self, out: torch.Tensor, op: torch.Tensor, applied: torch.Tensor,
               mag: torch.Tensor) -> None:
        """One op slot in place; images with the same op (all geometric ops together) form a
        group. Images are in at most one group, so groups may be written in any order."""
        ids = applied.nonzero().squeeze(1)
        kinds, mag = op[ids], mag[ids]
        geo = kinds < len(GEOMETRIC)
        if geo.any():
            theta = torch.empty(int(geo.sum()), 2, 3)
            for k, name in enumerate(GEOMETRIC):
                sel = kinds[geo] == k
                if sel.any():
                    theta[sel] = geometric_theta(name, mag[geo][sel], self.height, self.width)
            idx = ids[geo].to(out.device)
            out[idx] = affine_nearest(out[idx], theta)
        for name, fn in _PIXEL_OPS.items():
            sel = kinds == OPS.index(name)
            if name == "Solarize":  # Invert is Solarize at threshold 0 (its magnitude)
                sel |= kinds == OPS.index("Invert")
            if sel.any():
                idx = ids[sel].to(out.device)
                out[idx] = fn(out[idx], mag[sel])


_PIXEL_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Brightness": lambda x, m: brightness(x, 1.0 + m),
    "Color": lambda x, m: color(x, 1.0 + m),
    "Contrast": lambda x, m: contrast(x, 1.0 + m),
    "Sharpness": lambda x, m: sharpness(x, 1.0 + m),
    "Posterize": posterize,
    "Solarize": solarize,
    "AutoContrast": lambda x, m: autocontrast(x),
    "Equalize": lambda x, m: equalize(x),
}
