"""Batches for the training loop: in-memory tensors on the device, or lazily decoded files.

Every random choice (order, crops, flips, AutoAugment, Cutout, file augmentations) is drawn from
the CPU `torch.Generator` passed to `epoch`/`stream`, never from global state that model code also
consumes, so a run is reproducible and resumable from the generator's state alone. In-memory
batches are augmented as whole batches on their device (`dnet_tune.data.augment`), or as one
whole epoch that is then sliced into batches (`dnet_tune.data.augment_epoch`). File datasets
without AutoAugment are decoded with torchvision.io and augmented as batches
(`dnet_tune.data.file_batches.FileBatches`, on the GPU when there is one). With AutoAugment they
decode and augment per image in DataLoader workers with PIL transforms (`PILFileBatches`), which
read the global RNG; each item runs under `torch.random.fork_rng` seeded from the generator,
which leaves the caller's global RNG untouched.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset

from dnet_tune.data.augment import AUGMENTS, AutoAugment, crop_flip, cutout, host_threads
from dnet_tune.data.augment_epoch import augment_epoch, sliced_batches
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.file_batches import (
    EpochLoader,
    FileBatches,
    Shard,
    epoch_items,
    refuse_cifar_recipe,
)

Batch = tuple[torch.Tensor, torch.Tensor]
__all__ = ["FileBatches", "MetaBatches", "PILFileBatches", "Shard", "TensorBatches",
           "make_batches"]
SPANS = ("batch", "epoch")  # resolved `data.augment_span` values (`auto` is resolved before)


class _Normalize:
    """uint8 → float `(x/255 − mean)/std` as one fused multiply-add on the device."""

    def __init__(self, ds: LTDataset, device: torch.device) -> None:
        mean = torch.tensor(ds.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.tensor(ds.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = mean / std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale - self.shift


class TensorBatches:
    """Batches of an in-memory split; the uint8 images are moved to `device` once.

    `augment`: crop_flip = random crop (zero padding) + h-flip (RGB only); autoaugment = that +
    AutoAugment (CIFAR-10 policy); autoaugment_cutout = that + Cutout of `cutout_size` px (the
    CIFAR recipe of the spec's §6). Everything runs on `device` before and after normalisation.
    `span`: batch = draw and apply per batch; epoch = the whole epoch in one pass, then sliced
    (`augment_epoch`: other draw order, same distribution; with augment none both are the same).
    """

    def __init__(
        self,
        split: Split,
        ds: LTDataset,
        batch_size: int,
        *,
        shuffle: bool,
        augment: str,
        device: torch.device,
        drop_last: bool = False,
        cutout_size: int = 16,
        span: str = "batch",
    ) -> None:
        if span not in SPANS:
            raise ValueError(f"augment span must be one of {SPANS}, got {span!r}")
        if split.images is None:
            raise ValueError("TensorBatches needs an in-memory split (images, not paths)")
        if augment not in AUGMENTS:
            raise ValueError(f"unknown augment {augment!r}")
        self.images = split.images.to(device)
        # a copy: arrays from the Ray object store are read-only (zero-copy) and torch warns
        self.labels = torch.tensor(split.labels, dtype=torch.int64, device=device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.device = device
        self.drop_last = drop_last
        self.span = span
        self.flip = ds.in_channels == 3  # digits are not mirror-symmetric, natural images are
        self.normalize = _Normalize(ds, device)
        self.cutout_size = cutout_size if augment == "autoaugment_cutout" else 0
        self._autoaugment = (
            AutoAugment(height=ds.image_size, width=ds.image_size)
            if augment.startswith("autoaugment") else None
        )

    def __len__(self) -> int:
        return self._num_batches(len(self.labels))

    def _num_batches(self, n: int) -> int:
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _augment(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if self.augment == "none":
            return self.normalize(x)
        x = crop_flip(x, gen, self.flip)
        if self._autoaugment is not None:
            x = self._autoaugment(x, gen)
        x = self.normalize(x)
        if self.cutout_size:
            x = cutout(x, gen, self.cutout_size)
        return x

    def epoch(self, generator: torch.Generator | None,
              order: torch.Tensor | None = None) -> Iterator[Batch]:
        """One pass; `order` (indices, repeats allowed) replaces the shuffle, e.g. a sampler's."""
        n = len(self.labels)
        if order is not None:
            order = order.to(self.device)
        elif self.shuffle:
            order = torch.randperm(n, generator=generator).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        if self.span == "epoch" and self.augment != "none":
            yield from self._whole_epoch(order, generator)
            return
        for b in range(self._num_batches(len(order))):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            with host_threads(self.device):  # not across the yield: the model keeps its threads
                x = self._augment(self.images[idx], generator)
            yield x, self.labels[idx]

    def _whole_epoch(self, order: torch.Tensor, gen: torch.Generator | None) -> Iterator[Batch]:
        num = self._num_batches(len(order))
        if num == 0:  # as per batch: no batch, no draws
            return
        order = order[: num * self.batch_size]  # drop_last: a dropped batch draws nothing
        with host_threads(self.device):
            x, holes = augment_epoch(self.images[order], gen, flip=self.flip,
                                     autoaugment=self._autoaugment,
                                     cutout_size=self.cutout_size)
        yield from sliced_batches(x, self.labels[order], holes, self.batch_size, num,
                                  self.normalize)


class _FileDataset(Dataset[Batch]):
    """Decodes one image; items are (index, seed) so augmentation is seeded per sample."""

    def __init__(self, paths: list[str], labels: list[int], transform: object) -> None:
        self.paths = paths
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:  # type: ignore[override]
        from PIL import Image

        i, seed = item
        with Image.open(self.paths[i]) as im:
            img = im.convert("RGB")
        if seed < 0:
            x = self.transform(img)  # type: ignore[operator]
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                x = self.transform(img)  # type: ignore[operator]
        return x, self.labels[i]


def file_transform(ds: LTDataset, augment: str) -> object:
    """Train: RandomResizedCrop + flip + ColorJitter (+ ImageNet AutoAugment); eval: resize+crop."""
    import torchvision.transforms as T

    size = ds.image_size
    tail = [T.ToTensor(), T.Normalize(ds.mean, ds.std)]
    if augment == "none":
        return T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), *tail])
    ops: list[object] = [
        T.RandomResizedCrop(size),
        T.RandomHorizontalFlip(),
        T.ColorJitter(0.4, 0.4, 0.4),
    ]
    if augment == "autoaugment":
        ops.append(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET))
    return T.Compose([*ops, *tail])


class PILFileBatches:
    """Batches of a path split decoded by PIL per image, for AutoAugment (ImageNet policy).

    Order and augmentation from `generator`; DataLoader workers persist across epochs.
    """

    def __init__(
        self,
        split: Split,
        ds: LTDataset,
        batch_size: int,
        *,
        shuffle: bool,
        augment: str,
        device: torch.device,
        num_workers: int = 0,
        drop_last: bool = False,
    ) -> None:
        if split.paths is None:
            raise ValueError("PILFileBatches needs a split with paths")
        refuse_cifar_recipe(ds, augment)
        self.dataset = _FileDataset(split.paths, split.labels.tolist(), file_transform(ds, augment))
        self.n = len(split.paths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.random = augment != "none"
        self.device = device
        self.drop_last = drop_last
        self._loader = EpochLoader(self.dataset, num_workers, device)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def epoch(self, generator: torch.Generator | None,
              order: torch.Tensor | None = None, shard: Shard | None = None) -> Iterator[Batch]:
        """One pass; `order` (indices, repeats allowed) replaces the shuffle, e.g. a sampler's.
        `shard`: decode only this part of each batch (a rank of a distributed run); every item
        keeps the seed it has in the whole batch, so the shards concatenate to the batch."""
        batches = epoch_items(self.n, self.batch_size, self.drop_last, self.shuffle,
                              self.random, generator, order, shard)
        for x, y in self._loader.run(batches):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def make_batches(
    split: Split,
    ds: LTDataset,
    batch_size: int,
    *,
    shuffle: bool,
    augment: str,
    device: torch.device,
    num_workers: int = 0,
    drop_last: bool = False,
    cutout_size: int = 16,
    span: str = "batch",
) -> TensorBatches | FileBatches | PILFileBatches:
    """TensorBatches for in-memory splits; path splits: FileBatches, PILFileBatches for
    AutoAugment (per image: `span` is for in-memory splits only,
    `augment_epoch.resolve_augment_span` makes it batch for files)."""
    if split.in_memory:
        return TensorBatches(split, ds, batch_size, shuffle=shuffle, augment=augment,
                             device=device, drop_last=drop_last, cutout_size=cutout_size,
                             span=span)
    if span != "batch":
        raise ValueError(f"augment span {span!r} needs an in-memory split")
    files = PILFileBatches if augment == "autoaugment" else FileBatches
    return files(split, ds, batch_size, shuffle=shuffle, augment=augment, device=device,
                 num_workers=num_workers, drop_last=drop_last)


class MetaBatches:
    """Endless meta batches from H: shuffled cycles, eval-style images, every batch full.

    A batch that crosses a cycle boundary takes the rest of one permutation and the start of the
    next, so every H item is used once per cycle; if H is smaller than the batch size, each batch
    is all of H in a fresh order. With file splits and workers, the DataLoader prefetches, so the
    generator runs a few batches ahead of what has been consumed.
    """

    def __init__(
        self,
        split: Split,
        ds: LTDataset,
        batch_size: int,
        device: torch.device,
        num_workers: int = 0,
    ) -> None:
        if len(split) == 0:
            raise ValueError("MetaBatches needs a non-empty meta split (data.meta_per_class > 0)")
        self.n = len(split)
        self.batch_size = min(batch_size, self.n)
        self.device = device
        self.num_workers = num_workers
        self._tensors: TensorBatches | None = None
        self._files: FileBatches | None = None
        if split.in_memory:
            self._tensors = TensorBatches(split, ds, self.batch_size, shuffle=False,
                                          augment="none", device=device)
        else:
            self._files = FileBatches(split, ds, self.batch_size, shuffle=False, augment="none",
                                      device=device, num_workers=num_workers)

    def _index_batches(self, gen: torch.Generator | None) -> Iterator[list[int]]:
        pending: list[int] = []
        while True:
            while len(pending) < self.batch_size:
                pending += torch.randperm(self.n, generator=gen).tolist()
            yield pending[: self.batch_size]
            pending = pending[self.batch_size :]

    def stream(self, generator: torch.Generator | None, shard: Shard | None = None
               ) -> Iterator[Batch]:
        """`shard`: only this part of each batch (a rank of a distributed run)."""
        index_batches = self._index_batches(generator)
        if shard is not None:
            index_batches = (idx[shard(len(idx))] for idx in index_batches)
        if self._tensors is not None:
            t = self._tensors
            for idx in index_batches:
                i = torch.tensor(idx, device=self.device)
                with host_threads(self.device):
                    x = t.normalize(t.images[i])
                yield x, t.labels[i]
        else:
            assert self._files is not None
            batches = ([(i, -1) for i in idx] for idx in index_batches)
            yield from self._files.stream(batches)
