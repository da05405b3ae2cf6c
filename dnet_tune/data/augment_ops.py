"""AutoAugment's 14 image ops for batches of uint8 images, with per-image magnitudes.

Each op equals the same op of `torchvision.transforms.v2.functional` on the same image and
magnitude, as torchvision's AutoAugment calls it (nearest interpolation, fill 0), bit for bit on
the CPU; tests/data/test_augment.py checks each one. That needs torchvision's float arithmetic in
the same order and precision where the result is truncated to uint8: float32, factors and
1 − factor rounded from float64, and the fused multiply-adds where torchvision fuses (`_blend`,
`sharpness`). On CUDA the kernels may round differently, by at most one grey level, rarely.

Every op is split in two so that a caller can move all parameters of a batch to the device in
one copy: a parameter builder (CPU, float64 magnitudes in → (N, k) float32) and the op proper,
which takes those parameters on the images' device (`OPS`). The public functions combine both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F

Params = Callable[[torch.Tensor, int, int], torch.Tensor]  # (magnitudes, height, width) -> (N, k)
Apply = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, params) -> images

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
BLENDS = ("Brightness", "Color", "Contrast", "Sharpness")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Without waiting: a copy from pageable memory would stall the host until the GPU is idle."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


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


@lru_cache(maxsize=8)
def _half_size(hgt: int, wid: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([0.5 * wid, 0.5 * hgt], device=device)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour resampling, fill 0; `theta` (N, 6) maps each output pixel (centred
    coordinates) to its source, as torchvision's inverse affine matrix does."""
    n, _, hgt, wid = x.shape
    rescaled = theta.view(n, 2, 3).transpose(1, 2) / _half_size(hgt, wid, x.device)
    grid = _base_grid(hgt, wid, x.device).expand(n, -1, -1).bmm(rescaled).view(n, hgt, wid, 2)
    out = F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros",
                        align_corners=False)
    return out.round_().to(x.dtype)


def geometric_theta(op: str, m: torch.Tensor, hgt: int, wid: int) -> torch.Tensor:
    """(N, 6) inverse matrices for signed magnitudes `m` (float64).

    Shears act about the top-left corner and translations move by whole pixels (truncated
    toward zero), as torchvision's AutoAugment calls `affine`; Rotate turns about the centre.
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
    return theta.float().view(-1, 6)


def geometric(x: torch.Tensor, op: str, m: torch.Tensor) -> torch.Tensor:
    """ShearX/Y (shear factor), TranslateX/Y (pixels), Rotate (degrees) with per-image `m`."""
    theta = geometric_theta(op, m.double().cpu(), x.shape[-2], x.shape[-1])
    return _affine(x, to_device(theta, x.device))


# ----------------------------------------------------------------------------- colour ops


def factor_params(f: torch.Tensor) -> torch.Tensor:
    """(N, 2) float32: f and 1 − f, the latter taken in float64 first as torchvision does."""
    f = f.double().cpu()
    return torch.stack([f, 1.0 - f], dim=1).float()


def _col(p: torch.Tensor, j: int) -> torch.Tensor:
    return p[:, j : j + 1, None, None]  # (N, 1, 1, 1)


def _blend(x: torch.Tensor, other: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """x·f + other·(1 − f) with the second product fused into the sum (torchvision's rounding)."""
    return torch.addcmul(x.mul(_col(p, 0)), other, _col(p, 1)).clamp_(0, 255).to(torch.uint8)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma as torchvision's uint8 path computes it: float weights, then floored."""
    if x.shape[1] == 1:
        return x.float()
    r, g, b = x.unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(1)


def _brightness(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return x.mul(_col(p, 0)).clamp_(0, 255).to(torch.uint8)


def _color(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Saturation: blend with the grey image (a grey image is its own grey, so unchanged)."""
    return x.clone() if x.shape[1] == 1 else _blend(x, _grey(x), p)


def _contrast(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grey(x).mean(dim=(-3, -2, -1), keepdim=True), p)


@lru_cache(maxsize=8)
def _smoothing_kernel(device: torch.device) -> torch.Tensor:
    kernel = torch.full((3, 3), 1.0 / 13.0, device=device)
    kernel[1, 1] = 5.0 / 13.0
    return kernel.view(1, 1, 3, 3)


def _sharpness(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Blend with a 3×3 smoothed image (centre weight 5/13) whose border pixels are unchanged."""
    n, c, hgt, wid = x.shape
    if hgt <= 2 or wid <= 2:
        return x.clone()
    smooth = x.float()
    inner = F.conv2d(smooth.view(n * c, 1, hgt, wid), _smoothing_kernel(x.device)).round_()
    smooth[..., 1:-1, 1:-1] = inner.view(n, c, hgt - 2, wid - 2)
    xf = x.float()
    # x + (1 − f)·(smooth − x), fused: torchvision's form here, which rounds unlike `_blend`
    return torch.addcmul(xf, smooth.sub_(xf), _col(p, 1)).clamp_(0, 255).to(torch.uint8)


def brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _brightness(x, to_device(factor_params(f), x.device))


def color(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _color(x, to_device(factor_params(f), x.device))


def contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _contrast(x, to_device(factor_params(f), x.device))


def sharpness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _sharpness(x, to_device(factor_params(f), x.device))


# ----------------------------------------------------------------------------- pixel ops


def _column(v: torch.Tensor) -> torch.Tensor:
    return v.double().cpu().float().view(-1, 1)


def _posterize(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` bits of each channel value."""
    shift = 8 - p[:, 0].long()
    return x & ((255 << shift) & 255).to(torch.uint8).view(-1, 1, 1, 1)


def _solarize(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Invert every value >= threshold (threshold 0 inverts the whole image)."""
    return torch.where(x >= _col(p, 0), 255 - x, x)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    return _posterize(x, to_device(_column(bits), x.device))


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return _solarize(x, to_device(_column(threshold), x.device))


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


@lru_cache(maxsize=8)
def _levels(device: torch.device) -> torch.Tensor:
    return torch.arange(256, device=device)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram equalisation with PIL's integer lookup table.

    The table spreads the pixels below the brightest occupied level evenly over 0..255; with a
    single occupied level (step 0) the channel is left unchanged.
    """
    n, c, hgt, wid = x.shape
    flat = x.reshape(n * c, hgt * wid).long()
    hist = torch.zeros(n * c, 256, dtype=torch.int64, device=x.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    levels = _levels(x.device)
    top = torch.where(hist > 0, levels, -1).amax(dim=1, keepdim=True)
    step = (hgt * wid - hist.gather(1, top)) // 255
    below = hist.cumsum(1) - hist  # pixels at lower levels
    lut = ((below + step // 2) // step.clamp(min=1)).clamp_(max=255)
    lut = torch.where(step > 0, lut, levels)
    return lut.gather(1, flat).to(torch.uint8).view(n, c, hgt, wid)


# ----------------------------------------------------------------------------- the table


def _geometric_params(op: str) -> Params:
    return lambda m, hgt, wid: geometric_theta(op, m, hgt, wid)


def _factor(m: torch.Tensor, hgt: int, wid: int) -> torch.Tensor:
    return factor_params(1.0 + m)


def _none(m: torch.Tensor, hgt: int, wid: int) -> torch.Tensor:
    return torch.empty(len(m), 0)


# op -> (parameters from signed AutoAugment magnitudes, the op on the device). Ops that share
# the second function are applied as one group: all geometric ops, Solarize with Invert.
OPS: dict[str, tuple[Params, Apply]] = {
    **{op: (_geometric_params(op), _affine) for op in GEOMETRIC},
    "Brightness": (_factor, _brightness),
    "Color": (_factor, _color),
    "Contrast": (_factor, _contrast),
    "Sharpness": (_factor, _sharpness),
    "Posterize": (lambda m, h, w: _column(m), _posterize),
    "Solarize": (lambda m, h, w: _column(m), _solarize),
    "Invert": (lambda m, h, w: torch.zeros(len(m), 1), _solarize),
    "AutoContrast": (_none, lambda x, p: autocontrast(x)),
    "Equalize": (_none, lambda x, p: equalize(x)),
}
