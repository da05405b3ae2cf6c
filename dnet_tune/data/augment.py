"""Batch augmentation on the batch's device: crop+flip, AutoAugment (CIFAR-10 policy), Cutout.

Why batch ops: torchvision's AutoAugment transforms one image at a time, so the in-memory CIFAR
batches used to leave the device, run per image on the host and come back; on a GPU that made
augmentation, not the model, the bottleneck. Here every op takes a whole group of images at once
and stays on the images' device (the ops themselves, equal to torchvision's: `augment_ops`).

Why not Kornia (0.9.0, checked for this module; details in docs/benchmarks.md): its AutoAugment
picks one sub-policy per call, i.e. per batch, where the policy is defined per image; its
parameters come from torch's global RNG with no way to pass a `torch.Generator` (a `generator=`
argument is refused), and our runs must replay exactly from their own generator; and its policy
is not torchvision's (magnitudes sampled within a bin instead of the bin's value, shear scaled
to degrees without atan). Its float ops agree with torchvision's uint8 ops to ±1 grey level at
best, where ours are bit-equal.

Randomness: only parameters are random (a few numbers per image); they are drawn on the CPU from
the caller's generator, so the same generator gives the same choices on any device and the global
RNG is never touched. The per-image choices are those of torchvision's AutoAugment: a sub-policy
uniformly, an apply coin per op (apply if coin <= p) and a sign per signed op. Images are then
grouped by op and each group is transformed as one batch. Parameters reach the device in one
non-blocking copy per call, so a GPU is never waited for inside an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple, get_args

import numpy as np
import torch
import torch.nn.functional as F

from dnet_tune.config import Augment
from dnet_tune.data import augment_ops
from dnet_tune.data.augment_ops import BLENDS, GEOMETRIC, Apply, to_device

AUGMENTS: tuple[str, ...] = get_args(Augment)  # the config's names: one list for both
NUM_BINS = 10

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


@contextmanager
def host_threads(device: torch.device, n: int = 1) -> Iterator[None]:
    """Run a batch's augmentation on the CPU with `n` intra-op threads, then restore the count.

    Augmentation is hundreds of small ops per batch. With two threads on a 2-core machine that
    other processes also use, each parallel region waits for a descheduled partner thread: the
    CIFAR recipe ran at 1,700 images/s with 2 threads and 24,000 with 1 in runs minutes apart
    (docs/benchmarks.md). Model code keeps the caller's thread count; a GPU run is unaffected.
    """
    before = torch.get_num_threads()
    if device.type != "cpu" or before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- crop, flip, cutout


def crop_flip(x: torch.Tensor, gen: torch.Generator | None, flip: bool) -> torch.Tensor:
    """Random crop after zero padding (4 px at 32 px, scaled as max(1, size//8)) + h-flip.

    One gather with a per-image index (offset and mirrored columns folded in): advanced indexing
    over three broadcast index tensors was 4x slower on the CPU.
    """
    b, c, hgt, wid = x.shape
    pad = max(1, hgt // 8)
    dev = x.device
    draws = [torch.randint(0, 2 * pad + 1, (b,), generator=gen) for _ in range(2)]
    if flip:
        draws.append((torch.rand(b, generator=gen) < 0.5).long())
    oy, ox, *mirror = to_device(torch.stack(draws).numpy(), dev).view(-1, b, 1, 1)
    cols = torch.arange(wid, device=dev).expand(b, 1, wid)
    if mirror:
        cols = torch.where(mirror[0].bool(), cols.flip(2), cols)
    rows = torch.arange(hgt, device=dev)[:, None]
    index = (oy + rows) * (wid + 2 * pad) + ox + cols  # (b, hgt, wid) into the padded image
    padded = F.pad(x, (pad, pad, pad, pad)).view(b, c, -1)
    return padded.gather(2, index.view(b, 1, -1).expand(b, c, -1)).view(b, c, hgt, wid)


def cutout(x: torch.Tensor, gen: torch.Generator | None, size: int) -> torch.Tensor:
    """One `size`×`size` square per image zeroed, centre uniform, clipped at the border.

    Called after normalisation, so the hole is the mean colour, as in DeVries & Taylor's code.
    """
    b, _, hgt, wid = x.shape
    return x.masked_fill(cutout_holes(b, hgt, wid, gen, size, x.device)[:, None], 0.0)


def cutout_holes(b: int, hgt: int, wid: int, gen: torch.Generator | None, size: int,
                 device: torch.device) -> torch.Tensor:
    """Cutout's draws for `b` images as a (b, hgt, wid) bool mask (True: zeroed).

    Apart from `cutout` so that the epoch-at-once path (`augment_epoch`) can draw the holes of a
    whole epoch before normalisation, which it does per batch, and fill them afterwards.
    """
    centre = torch.stack([torch.randint(0, n, (b,), generator=gen) for n in (hgt, wid)])
    top, left = to_device((centre - size // 2).numpy(), device).view(2, b, 1)
    ar_h = torch.arange(hgt, device=device)[None]
    ar_w = torch.arange(wid, device=device)[None]
    in_rows = (ar_h >= top) & (ar_h < top + size)
    in_cols = (ar_w >= left) & (ar_w < left + size)
    return in_rows[:, :, None] & in_cols[:, None, :]


# ----------------------------------------------------------------------------- the policy


class Draw(NamedTuple):
    """One batch's random choices (CPU): all (N,) except the (N, 2) per-op columns."""

    subpolicy: torch.Tensor
    coins: torch.Tensor
    signs: torch.Tensor
    op: torch.Tensor  # index into OPS
    applied: torch.Tensor
    magnitude: torch.Tensor  # float64, signed


Group = tuple[Apply, np.ndarray, np.ndarray]  # group function, image indices, (N, k) params


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
        op, applied, mag = d.op.numpy(), d.applied.numpy(), d.magnitude.numpy()
        groups = [g for slot in range(2) for g in self._groups(
            op[:, slot], applied[:, slot], mag[:, slot])]
        out = x.clone()
        if not groups:
            return out
        # two copies to the device for the whole batch, then slices of them
        index = to_device(np.concatenate([ids for _, ids, _ in groups]), x.device)
        params = to_device(np.concatenate([p.ravel() for _, _, p in groups]), x.device)
        i = j = 0
        for fn, _, p in groups:  # slot 0's groups first: the ops compose in policy order
            n, k = p.shape
            idx = index[i : i + n]
            out[idx] = fn(out[idx], params[j : j + n * k].view(n, k))
            i, j = i + n, j + n * k
        return out

    def _groups(self, op: np.ndarray, applied: np.ndarray, mag: np.ndarray) -> list[Group]:
        """One op slot, planned on the CPU: images by group function (ops that share one are
        one group). An image is in at most one group of a slot."""
        parts: dict[Apply, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for k in np.unique(op[applied]).tolist():
            ids = np.flatnonzero(applied & (op == k))
            make_params, fn = augment_ops.OPS[OPS[k]]
            idx_list, param_list = parts.setdefault(fn, ([], []))
            idx_list.append(ids)
            param_list.append(make_params(mag[ids], self.height, self.width))
        return [(fn, np.concatenate(i), np.concatenate(p)) for fn, (i, p) in parts.items()]
