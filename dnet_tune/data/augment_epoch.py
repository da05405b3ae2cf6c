"""Augmentation once per epoch (`data.augment_span: epoch`): one pass of grouped ops over all the
epoch's images, then batches are slices of the result.

Why: the batch ops of `augment` cost a fixed number of small tensor ops per batch (about 210 per
batch of 128 for the CIFAR recipe), whatever the batch's size. On a GPU each is a kernel launch,
so the launches, not the pixels, bound the speed; over a whole epoch the same op groups are
launched once. On the CPU the larger tensors fall out of the caches and per batch is faster
(docs/benchmarks.md), so `auto` keeps the CPU per batch (`resolve_augment_span` below).

Same distribution: every image gets the same kind of draws as in per-batch mode (crop offsets
and flip, AutoAugment's sub-policy, coins and signs, Cutout's centre), from the same functions,
so per image the drawn parameters give exactly torchvision's output (tests/data/
test_augment_epoch.py checks it image by image).

Draw order, the one difference from per-batch mode: per batch, the epoch's generator gives the
permutation, then for each batch in turn its crop/flip draws, its AutoAugment draws and its
Cutout centres. Here it gives the permutation, then the crop/flip draws of all the epoch's images
(in permutation order), then all their AutoAugment draws, then all their Cutout centres. The two
modes therefore give different (equally distributed) batches for one generator and are not
bit-identical to each other; each is deterministic given the generator `(seed, epoch, stream)`,
so resuming a run replays its epochs exactly as long as its recorded span is kept.

Memory: the epoch's uint8 images are gathered once (`EPOCH_SPAN_MAX_BYTES`, 512 MiB, bounds
them for `auto`). The pass needs about 8x that on top, transiently (measured on the CPU: 299 MiB
for the 36 MiB of a CIFAR-10-LT epoch): the crop's padded copy and its int64 gather index (8
bytes per pixel position) and their temporaries, AutoAugment's copy and the float copies of the
op groups. At the bound that is about 4 GiB of device memory. Normalisation and the Cutout fill
stay per batch, so float images exist only a batch at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

from dnet_tune.config import Config
from dnet_tune.data.augment import AutoAugment, crop_flip, cutout_holes, host_threads
from dnet_tune.data.base import LTDataset
from dnet_tune.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor]
# `auto` augments whole epochs on CUDA only while an epoch's uint8 images fit this bound (the
# pass needs about 8x that on top, transiently: see above)
EPOCH_SPAN_MAX_BYTES = 512 * 2**20


def augment_epoch(
    x: torch.Tensor,
    gen: torch.Generator | None,
    *,
    flip: bool,
    autoaugment: AutoAugment | None,
    cutout_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The epoch's uint8 images (already in permutation order) cropped, flipped and
    AutoAugmented in one pass, and Cutout's holes as a (N, H, W) mask (None: no Cutout).

    The holes are filled after normalisation, as in per-batch mode (the hole is the mean colour).
    """
    x = crop_flip(x, gen, flip)
    if autoaugment is not None:
        x = autoaugment(x, gen)
    holes = (cutout_holes(len(x), x.shape[-2], x.shape[-1], gen, cutout_size, x.device)
             if cutout_size else None)
    return x, holes


def sliced_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    holes: torch.Tensor | None,
    batch_size: int,
    num_batches: int,
    normalize: Callable[[torch.Tensor], torch.Tensor],
) -> Iterator[Batch]:
    """The augmented epoch cut into batches in order, normalised (and holes filled) per batch;
    the last batch may be smaller."""
    for b in range(num_batches):
        part = slice(b * batch_size, (b + 1) * batch_size)
        with host_threads(images.device):  # not across the yield: the model keeps its threads
            x = normalize(images[part])
            if holes is not None:
                x = x.masked_fill(holes[part, None], 0.0)
        yield x, labels[part]


def epoch_bytes(ds: LTDataset, stage2: bool) -> int | None:
    """uint8 bytes of the run's longest training epoch, None when the train split is decoded
    from files. With stage 2, its class-aware epoch of n_max · C images counts too
    (`stage2_sampler.epoch_length`: as many images as if every class were the largest)."""
    images = ds.train.images
    if images is None:
        return None
    n = len(ds.train)
    if stage2 and n:
        n = max(n, max(ds.train_counts()) * ds.num_classes)
    per_image = images[0].numel() * images.element_size() if n else 0
    return int(n * per_image)


def resolve_span(cfg: Config, device: torch.device, ds: LTDataset) -> Config:
    """`resolve_augment_span` for the run's device and dataset."""
    return resolve_augment_span(cfg, device.type, epoch_bytes(ds, cfg.stage2.enabled))


def resolve_augment_span(cfg: Config, device_type: str, epoch_bytes: int | None) -> Config:
    """`cfg` with `data.augment_span: auto` replaced by the span that runs (and is recorded).

    `epoch_bytes`: the uint8 size of the run's longest training epoch, None for a dataset decoded
    from files (augmented per batch as it is decoded: no span to choose). On the CPU per-batch ops
    were faster (docs/benchmarks.md) and keep older runs' batches bit-identical; on CUDA the
    kernel count is the cost, so a whole epoch at once, unless it is larger than the bound.
    """
    span = cfg.data.augment_span
    if epoch_bytes is None:
        if span == "epoch":
            raise UserError(f"config key 'data.augment_span' is epoch, but {cfg.data.name} is "
                            f"decoded from files batch by batch: use auto or batch")
        span = "batch"
    elif span == "auto":
        span = ("epoch" if device_type == "cuda" and epoch_bytes <= EPOCH_SPAN_MAX_BYTES
                else "batch")
    if span == cfg.data.augment_span:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment_span=span))


def recorded_span(raw: dict[str, Any]) -> dict[str, Any]:
    """A recorded config (a checkpoint's) from before `data.augment_span` existed augmented per
    batch: resumed, it keeps doing so instead of resolving `auto` anew (epoch on CUDA)."""
    data = raw.get("data")
    if not isinstance(data, dict) or "augment_span" in data:
        return raw
    return {**raw, "data": {**data, "augment_span": "batch"}}
