"""File datasets as uint8 batches: decoded with torchvision.io, augmented with batch ops.

Why: the PIL path (`loader.PILFileBatches`) decodes and augments one image at a time and ships
float32 tensors between processes; on a GPU it is the bottleneck, on a CPU it is slower than it
needs to be. Here:

- CPU device: each DataLoader worker takes a whole batch: reads and decodes its files
  (`torchvision.io.decode_jpeg`, libjpeg-turbo; other formats `decode_image`), crops and resizes
  each image, then flips and colour-jitters the batch as batch ops (`augment_file`) and sends one
  uint8 tensor (4x less than float32) to the main process, which normalises it.
- CUDA device: workers only read the files' bytes; the main process decodes the JPEGs of a batch
  on the GPU in one call (`decode_jpeg(list, device='cuda')`) and crops, resizes, flips, jitters
  and normalises there. Files that are not JPEG (PNG in folder_lt) are decoded on the CPU in the
  workers and copied over; the log says so once.

Randomness: `epoch(generator)` draws the order and one seed per item from the run's generator
(`train.epoch_generator(seed, epoch, stream)`), as the PIL path does; an item's crop box, flip and
jitter are drawn from a generator seeded with its seed (`augment_file.draw_train`). So a batch
depends on (generator state, item) only: not on worker count, process or prefetching, and a
resumed run that recreates the generator gets the same epoch. Same seed → same parameters as the
PIL path; the pixels are not bit-identical to it (torchvision.io vs PIL decoding, torch vs PIL
resizing and blending: a few grey levels), nor between CPU and GPU (nvJPEG vs libjpeg-turbo).

Workers persist across epochs (`EpochLoader`): the batches of an epoch are handed to the same
DataLoader, whose batch sampler is swapped, so worker start-up is paid once per run.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader, Dataset

from dnet_tune.data import augment_file as A
from dnet_tune.data.augment import host_threads
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.errors import UserError

log = logging.getLogger(__name__)
Batch = tuple[torch.Tensor, torch.Tensor]
Item = tuple[int, int]  # (index, seed); seed < 0: eval transform
# which part of a batch of n items to keep: a rank of a distributed run (Comm.shard)
Shard = Callable[[int], slice]
SEED_HIGH = 2**62
_JPEG_MAGIC = bytes((0xFF, 0xD8, 0xFF))


def is_jpeg(data: torch.Tensor) -> bool:
    return bytes(data[:3].tolist()) == _JPEG_MAGIC


@contextmanager
def quiet() -> Iterator[None]:
    """torchvision 0.29 deprecates its image codecs (for TorchCodec, not a dependency here) with a
    DeprecationWarning per call; we use them knowingly, so one call is not one warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)
        yield


def decode(data: torch.Tensor, path: str, device: str = "cpu") -> torch.Tensor:
    """File bytes → RGB uint8 CHW; a file we cannot decode is the user's to fix."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    try:
        with quiet():
            if is_jpeg(data):
                out = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
                assert isinstance(out, torch.Tensor)
                return out
            return decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise UserError(f"{path}: cannot decode this image ({str(exc).splitlines()[0]}); "
                        f"replace or remove the file") from None


def read(path: str) -> torch.Tensor:
    from torchvision.io import read_file

    try:
        with quiet():
            return read_file(path)
    except RuntimeError as exc:  # gone or unreadable since the lists were read
        raise UserError(f"{path}: cannot read this image ({str(exc).splitlines()[0]}); "
                        f"restore the file or rebuild the dataset") from None


def transform(images: list[torch.Tensor], seeds: list[int], size: int) -> torch.Tensor:
    """Decoded CHW uint8 images → the augmented (seed >= 0) or eval uint8 batch, on their device."""
    if not images:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    if seeds[0] < 0:
        return torch.stack([A.eval_image(img, size) for img in images])
    params = [A.draw_train(A.item_generator(s), *img.shape[-2:]) for img, s in zip(images, seeds,
                                                                                   strict=True)]
    return A.train_batch(images, params, size)


class _Files(Dataset[Any]):
    """Whole batches per fetch (`__getitems__`): decoded and augmented, or raw bytes."""

    def __init__(self, paths: list[str], labels: list[int], size: int, raw: bool) -> None:
        self.paths, self.labels, self.size, self.raw = paths, labels, size, raw

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: Item) -> Any:
        return self.__getitems__([item])

    def __getitems__(self, items: list[Item]) -> tuple[Any, ...]:
        labels = torch.tensor([self.labels[i] for i, _ in items], dtype=torch.int64)
        seeds = [s for _, s in items]
        data = [read(self.paths[i]) for i, _ in items]
        if self.raw:  # JPEGs stay bytes for the GPU; the rest are decoded here
            files = [d if is_jpeg(d) else decode(d, self.paths[i])
                     for d, (i, _) in zip(data, items, strict=True)]
            return files, seeds, [self.paths[i] for i, _ in items], labels
        # one thread: without workers this runs in the main process, whose thread count is the
        # model's (and many small ops on two threads of a busy 2-core machine crawl)
        with host_threads(torch.device("cpu")):
            images = [decode(d, self.paths[i]) for d, (i, _) in zip(data, items, strict=True)]
            return transform(images, seeds, self.size), labels


def one_line_errors(loader: Iterable[Any]) -> Iterator[Any]:
    """A UserError raised in a worker comes back with the worker's traceback in its message; the
    user gets its own one line (the traceback is kept only for bugs)."""
    try:
        yield from loader
    except UserError as exc:
        lines = str(exc).strip().splitlines()
        if len(lines) > 1 and lines[-1].startswith("dnet_tune.errors.UserError: "):
            raise UserError(lines[-1].removeprefix("dnet_tune.errors.UserError: ")) from None
        raise


def _as_is(batch: Any) -> Any:
    return batch


class _Batches:
    """A batch sampler whose batches are replaced every epoch (the DataLoader keeps it)."""

    def __init__(self) -> None:
        self.batches: list[list[Item]] = []

    def __iter__(self) -> Iterator[list[Item]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class EpochLoader:
    """One DataLoader for a run; with workers, they persist across epochs.

    Consume one epoch before starting the next: starting an epoch resets the shared iterator
    (batches the previous epoch had prefetched are dropped).
    """

    def __init__(self, dataset: Dataset[Any], num_workers: int, device: torch.device,
                 collate: Any = None) -> None:
        self.sampler = _Batches()
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            num_workers=num_workers,
            collate_fn=collate,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            # Worker base seeds would otherwise be drawn from the global RNG; items carry their
            # own seeds, so a constant generator keeps the caller's RNG untouched at no cost.
            generator=torch.Generator().manual_seed(0),
        )

    def run(self, batches: Iterable[list[Item]]) -> Iterator[Any]:
        self.sampler.batches = list(batches)
        yield from one_line_errors(self.loader)


def epoch_items(n: int, batch_size: int, drop_last: bool, shuffle: bool, random: bool,
                generator: torch.Generator | None, order: torch.Tensor | None = None,
                shard: Shard | None = None) -> list[list[Item]]:
    """An epoch's batches of (index, seed): the order, then one seed per item, from `generator`;
    `shard`: only that part of each batch, its items keeping their seeds."""
    if order is not None:
        order_list: list[int] | range = order.tolist()
    elif shuffle:
        order_list = torch.randperm(n, generator=generator).tolist()
    else:
        order_list = range(n)
    m = len(order_list)
    seeds = torch.randint(0, SEED_HIGH, (m,), generator=generator).tolist() if random else [-1] * m
    items = list(zip(order_list, seeds, strict=True))
    count = m // batch_size if drop_last else -(-m // batch_size)
    batches = [items[b * batch_size : (b + 1) * batch_size] for b in range(count)]
    return batches if shard is None else [batch[shard(len(batch))] for batch in batches]


def refuse_cifar_recipe(ds: LTDataset, augment: str) -> None:
    """AutoAugment + Cutout is the CIFAR recipe's, for in-memory images; both file paths say so."""
    if augment == "autoaugment_cutout":
        raise UserError(f"data.augment=autoaugment_cutout is the CIFAR recipe for in-memory "
                        f"datasets; {ds.name} is decoded from files: use none, crop_flip or "
                        f"autoaugment")


class FileBatches:
    """Batches of a path split; `augment` none (resize + centre crop) or crop_flip (the recipe:
    RandomResizedCrop + flip + ColorJitter); order and augmentation from the epoch's generator."""

    told_not_jpeg: ClassVar[bool] = False

    def __init__(self, split: Split, ds: LTDataset, batch_size: int, *, shuffle: bool,
                 augment: str, device: torch.device, num_workers: int = 0,
                 drop_last: bool = False) -> None:
        if split.paths is None:
            raise ValueError("FileBatches needs a split with paths")
        refuse_cifar_recipe(ds, augment)
        if augment not in ("none", "crop_flip"):  # autoaugment: loader.PILFileBatches
            raise ValueError(f"FileBatches does augment none or crop_flip, not {augment!r}")
        self.n = len(split.paths)
        self.paths = split.paths
        self.size = ds.image_size
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.random = augment != "none"
        self.device = device
        self.gpu = device.type == "cuda"
        dataset = _Files(split.paths, split.labels.tolist(), self.size, raw=self.gpu)
        self.dataset, self.num_workers = dataset, num_workers
        self._loader = EpochLoader(dataset, num_workers, device, _as_is)
        mean = torch.tensor(ds.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(ds.std, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std), mean / std  # as loader._Normalize

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def epoch(self, generator: torch.Generator | None,
              order: torch.Tensor | None = None, shard: Shard | None = None) -> Iterator[Batch]:
        """One pass; `order` (indices, repeats allowed) replaces the shuffle, e.g. a sampler's.
        `shard`: decode only this part of each batch (a rank of a distributed run); every item
        keeps the seed it has in the whole batch, and the batch ops are per image, so the shards
        concatenate to the batch."""
        batches = epoch_items(self.n, self.batch_size, self.drop_last, self.shuffle,
                              self.random, generator, order, shard)
        for got in self._loader.run(batches):
            yield self._finish(got)

    def stream(self, batches: Iterable[list[Item]]) -> Iterator[Batch]:
        """Batches of (index, seed) lists from an iterable that may never end (meta batches):
        a DataLoader of its own, which prefetches a few batches ahead."""
        loader = DataLoader(self.dataset, batch_sampler=batches,
                            num_workers=self.num_workers, collate_fn=_as_is,
                            pin_memory=self.gpu, generator=torch.Generator().manual_seed(0))
        for got in one_line_errors(loader):
            yield self._finish(got)

    def _finish(self, got: tuple[Any, ...]) -> Batch:
        x = self._on_gpu(*got) if self.gpu else got[0].to(self.device, non_blocking=True)
        # in place: one float32 batch allocated, not two (each costs its page faults on a CPU)
        x = x.float().mul_(self.scale).sub_(self.shift)
        return x, got[-1].to(self.device, non_blocking=True)

    def _on_gpu(self, files: list[torch.Tensor], seeds: list[int], paths: list[str],
                labels: torch.Tensor) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        jpeg = [f.dim() == 1 for f in files]
        if not all(jpeg) and not FileBatches.told_not_jpeg:
            log.warning("some files are not JPEG (e.g. PNG): they are decoded on the CPU in the "
                        "loader workers; JPEGs are decoded on the GPU")
            FileBatches.told_not_jpeg = True  # once per process, not per split
        raw = [f for f, j in zip(files, jpeg, strict=True) if j]
        try:
            with quiet():
                out = decode_jpeg(raw, mode=ImageReadMode.RGB, device=self.device) if raw else []
        except RuntimeError as exc:  # e.g. a JPEG flavour nvJPEG lacks (CMYK): this batch on CPU
            log.warning("GPU JPEG decoding failed (%s); this batch is decoded on the CPU",
                        str(exc).splitlines()[0])
            names = [p for p, j in zip(paths, jpeg, strict=True) if j]
            out = [decode(f, p).to(self.device) for f, p in zip(raw, names, strict=True)]
        decoded = iter(out)
        images = [next(decoded) if j else f.to(self.device, non_blocking=True)
                  for f, j in zip(files, jpeg, strict=True)]
        return transform(images, seeds, self.size)
