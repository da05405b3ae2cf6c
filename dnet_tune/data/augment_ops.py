"""AutoAugment's 14 image ops for batches of uint8 images, with per-image magnitudes.

Each op equals the same op of `torchvision.transforms.v2.functional` on the same image and
magnitude, as torchvision's AutoAugment calls it (nearest interpolation, fill 0), bit for bit on
the CPU; tests/data/test_augment.py checks each one. That needs torchvision's float arithmetic in
the same order and precision where the result is truncated to uint8: float32, factors and
1 − factor rounded from float64, and fused multiply-adds where torchvision fuses (blends,
sharpness). On CUDA the kernels may round differently, by at most one grey level, rarely.

Cost model: a batch's groups are a few images each, so the time goes into launching tensor ops,
not into pixels. Each op is therefore split into a parameter builder (numpy, on the CPU) and a
group function on the images' device, and ops that can share one group function do: all
geometric ops (one resampling), Brightness/Color/Contrast (one blend, each image with its own
second image: black, grey or mean grey) and Posterize/Solarize/Invert (one masked inversion).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

Params = Callable[[np.ndarray, int, int], np.ndarray]  # (magnitudes, height, width) -> (N, k)
Apply = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, params) -> images

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
BLENDS = ("Brightness", "Color", "Contrast", "Sharpness")


def to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """Without waiting: a copy from pageable memory would stall the host until the GPU is idle."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _numpy(v: torch.Tensor | np.ndarray | float, n: int) -> np.ndarray:
    a = v.double().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, np.float64)
    return np.broadcast_to(a, (n,)).astype(np.float64)


def _col(p: torch.Tensor, j: int) -> torch.Tensor:
    return p[:, j : j + 1, None, None]  # (N, 1, 1, 1)


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


def geometric_theta(op: str, m: np.ndarray, hgt: int, wid: int) -> np.ndarray:
    """(N, 6) float32 inverse matrices for signed magnitudes `m` (float64).

    Shears act about the top-left corner and translations move by whole pixels (truncated
    toward zero), as torchvision's AutoAugment calls `affine`; Rotate turns about the centre,
    with libm's cos and sin as torchvision uses them.
    """
    theta = np.zeros((len(m), 2, 3))
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if op == "ShearX":
        theta[:, 0, 1] = m
        theta[:, 0, 2] = m * (hgt * 0.5)
    elif op == "ShearY":
        theta[:, 1, 0] = m
        theta[:, 1, 2] = m * (wid * 0.5)
    elif op == "TranslateX":
        theta[:, 0, 2] = -np.trunc(m)
    elif op == "TranslateY":
        theta[:, 1, 2] = -np.trunc(m)
    elif op == "Rotate":
        rad = [float(v) * (math.pi / 180.0) for v in m]
        cos, sin = [math.cos(r) for r in rad], [math.sin(r) for r in rad]
        theta[:, 0, 0], theta[:, 0, 1] = cos, np.negative(sin)
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    else:
        raise ValueError(f"{op} is not a geometric op")
    return theta.reshape(-1, 6).astype(np.float32)


def geometric(x: torch.Tensor, op: str, m: torch.Tensor) -> torch.Tensor:
    """ShearX/Y (shear factor), TranslateX/Y (pixels), Rotate (degrees) with per-image `m`."""
    theta = geometric_theta(op, _numpy(m, len(x)), x.shape[-2], x.shape[-1])
    return _affine(x, to_device(theta, x.device))


# ----------------------------------------------------------------------------- blends

_BLACK, _GREY, _MEAN = 0.0, 1.0, 2.0  # the second image of Brightness, Color, Contrast


def _factors(f: np.ndarray) -> np.ndarray:
    """(N, 2) float32: f and 1 − f, the latter taken in float64 first as torchvision does."""
    return np.stack([f, 1.0 - f], axis=1).astype(np.float32)


def blend_params(kind: float, f: np.ndarray) -> np.ndarray:
    """(N, 3): which second image, f, 1 − f."""
    return np.concatenate([np.full((len(f), 1), kind, np.float32), _factors(f)], axis=1)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma as torchvision's uint8 path computes it: float weights, then floored."""
    if x.shape[1] == 1:
        return x.float()
    r, g, b = x.unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(1)


def _blend(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """x·f + other·(1 − f), the second product fused into the sum (torchvision's rounding).

    Brightness blends with black: x·f + 0·(1 − f) is exactly x·f, torchvision's brightness.
    A one-channel image is its own grey, so Color leaves it unchanged.
    """
    kind = _col(p, 0)
    grey = _grey(x)
    mean = grey.mean(dim=(-3, -2, -1), keepdim=True)
    other = torch.where(kind == _GREY, grey, torch.where(kind == _MEAN, mean, 0.0))
    out = torch.addcmul(x.mul(_col(p, 1)), other, _col(p, 2)).clamp_(0, 255).to(torch.uint8)
    return torch.where(kind == _GREY, x, out) if x.shape[1] == 1 else out


def _sharpness(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Blend with a 3×3 smoothed image (centre weight 5/13) whose border pixels are unchanged;
    here torchvision computes x + (1 − f)·(smooth − x), which rounds unlike `_blend`."""
    n, c, hgt, wid = x.shape
    if hgt <= 2 or wid <= 2:
        return x.clone()
    smooth = x.float()
    inner = F.conv2d(smooth.view(n * c, 1, hgt, wid), _smoothing_kernel(x.device)).round_()
    smooth[..., 1:-1, 1:-1] = inner.view(n, c, hgt - 2, wid - 2)
    xf = x.float()
    return torch.addcmul(xf, smooth.sub_(xf), _col(p, 1)).clamp_(0, 255).to(torch.uint8)


@lru_cache(maxsize=8)
def _smoothing_kernel(device: torch.device) -> torch.Tensor:
    kernel = torch.full((3, 3), 1.0 / 13.0, device=device)
    kernel[1, 1] = 5.0 / 13.0
    return kernel.view(1, 1, 3, 3)


def brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, to_device(blend_params(_BLACK, _numpy(f, len(x))), x.device))


def color(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, to_device(blend_params(_GREY, _numpy(f, len(x))), x.device))


def contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, to_device(blend_params(_MEAN, _numpy(f, len(x))), x.device))


def sharpness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _sharpness(x, to_device(_factors(_numpy(f, len(x))), x.device))


# ----------------------------------------------------------------------------- pixel ops


def pixel_params(threshold: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """(N, 2): invert values >= threshold (256: none), then keep the top `bits` bits."""
    mask = (255 << (8 - bits.astype(np.int64))) & 255
    return np.stack([threshold, mask], axis=1).astype(np.float32)


def _pixel(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Solarize, Invert (threshold 0) and Posterize (threshold 256) in one."""
    mask = _col(p, 1).to(torch.uint8)
    return torch.where(x >= _col(p, 0), 255 - x, x).bitwise_and_(mask)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    n = len(x)
    return _pixel(x, to_device(pixel_params(np.full(n, 256.0), _numpy(bits, n)), x.device))


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    n = len(x)
    return _pixel(x, to_device(pixel_params(_numpy(threshold, n), np.full(n, 8.0)), x.device))


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


def _geometric(op: str) -> Params:
    return lambda m, hgt, wid: geometric_theta(op, m, hgt, wid)


def _blend_kind(kind: float) -> Params:
    return lambda m, hgt, wid: blend_params(kind, 1.0 + m)


def _none(m: np.ndarray, hgt: int, wid: int) -> np.ndarray:
    return np.empty((len(m), 0), np.float32)


# op -> (parameters from signed AutoAugment magnitudes, the group function on the device)
OPS: dict[str, tuple[Params, Apply]] = {
    **{op: (_geometric(op), _affine) for op in GEOMETRIC},
    "Brightness": (_blend_kind(_BLACK), _blend),
    "Color": (_blend_kind(_GREY), _blend),
    "Contrast": (_blend_kind(_MEAN), _blend),
    "Sharpness": (lambda m, h, w: _factors(1.0 + m), _sharpness),
    "Posterize": (lambda m, h, w: pixel_params(np.full(len(m), 256.0), m), _pixel),
    "Solarize": (lambda m, h, w: pixel_params(m, np.full(len(m), 8.0)), _pixel),
    "Invert": (lambda m, h, w: pixel_params(np.zeros(len(m)), np.full(len(m), 8.0)), _pixel),
    "AutoContrast": (_none, lambda x, p: autocontrast(x)),
    "Equalize": (_none, lambda x, p: equalize(x)),
}
