"""The one shape every dataset builder returns: four labelled splits plus what the loop needs.

In-memory datasets (digits, CIFAR) hold uint8 image tensors so batches can live on the device;
file-list datasets (ImageNet-LT, Places-LT, folders) hold paths and are decoded lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
import torch

from dnet_tune.data.longtail import shot_groups


@dataclass
class Split:
    """One split. Exactly one of `images` (uint8, N×C×H×W) or `paths` (absolute files) is set."""

    labels: np.ndarray  # int64, shape (N,)
    images: torch.Tensor | None = None
    paths: list[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.labels, minlength=num_classes).astype(int).tolist()

    @property
    def in_memory(self) -> bool:
        return self.images is not None


@dataclass
class LTDataset:
    name: str
    num_classes: int
    train: Split
    meta: Split  # H: balanced, feeds `a` and meta batches
    val: Split  # V: balanced, selection and search only; disjoint from H and test
    test: Split  # the official balanced test set; reported, never optimised
    mean: tuple[float, ...]  # per-channel normalisation, on the [0, 1] scale
    std: tuple[float, ...]
    image_size: int  # side of the (square) network input
    in_channels: int = 3
    class_names: list[str] = field(default_factory=list)

    def train_counts(self) -> list[int]:
        return self.train.counts(self.num_classes)

    def groups(self) -> dict[str, list[int]]:
        return shot_groups(self.train_counts())


class CarvedSplits(TypedDict):
    train: Split
    meta: Split
    val: Split


def carved_splits(pick: Callable[[np.ndarray], Split], train: np.ndarray, meta: np.ndarray,
                  val: np.ndarray) -> CarvedSplits:
    """The three splits carved from one source (train, H, V), through the source's picker."""
    return {"train": pick(train), "meta": pick(meta), "val": pick(val)}
