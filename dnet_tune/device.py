"""Device-dependent settings of a run: determinism, mixed precision and memory format.

They live in one place so CPU runs (tests, digits searches) keep their exact, reproducible
behaviour while the same config on a GPU picks the fast settings, without a second config.
"""

from __future__ import annotations

import contextlib
from typing import Literal, TypeVar

import torch
from torch import nn

T = TypeVar("T", torch.Tensor, nn.Module)


def resolve_deterministic(setting: bool | Literal["auto"], device: torch.device) -> bool:
    """auto: reproducible on CPU (costs little there); on CUDA, cudnn autotuning wins."""
    if setting == "auto":
        return device.type != "cuda"
    return bool(setting)


def apply_determinism(deterministic: bool) -> None:
    """Set both ways: a reused Ray worker must not inherit the previous trial's choice."""
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on the device's own type; fp32 is a no-op context.

    bf16 rather than fp16: same exponent range as fp32, so no loss scaling is needed.
    """
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def channels_last(obj: T, device: torch.device | str) -> T:
    """NHWC on CUDA (cuDNN's tensor-core convolutions prefer it); a no-op elsewhere.

    Only 4-D tensors and whole modules are converted; labels and vectors pass through unchanged.
    """
    if torch.device(device).type != "cuda":
        return obj
    if isinstance(obj, nn.Module):
        return obj.to(memory_format=torch.channels_last)
    if obj.dim() == 4:
        return obj.contiguous(memory_format=torch.channels_last)
    return obj
