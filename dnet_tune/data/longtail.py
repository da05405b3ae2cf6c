"""Long-tail arithmetic shared by every builder: the exponential profile, shot groups, carving.

Kept free of I/O so the published counts (12,406 / 10,847 / 12,341 / 10,302 images) can be
checked exactly and cheaply, and so every dataset carves its held-out sets the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dnet_tune.errors import UserError
from dnet_tune.shot_groups import SHOT_GROUPS, shot_group

# Tolerance for float error in IF**(-i/(C-1)): the exact product is an integer for i = 0 and often
# for i = C-1 (n_max / IF), and a value like 49.99999999999999 must still floor to 50.
_EPS = 1e-9


def lt_counts(n_max: int, num_classes: int, imbalance: float) -> list[int]:
    """`n_i = floor(n_max * IF**(-i/(C-1)))`, class 0 largest (the CIFAR-LT convention)."""
    if num_classes < 1 or n_max < 0 or imbalance < 1:
        raise ValueError(f"bad profile n_max={n_max} C={num_classes} IF={imbalance}")
    if num_classes == 1:
        return [n_max]
    out = []
    for i in range(num_classes):
        x = n_max * float(imbalance) ** (-i / (num_classes - 1))
        out.append(math.floor(x + _EPS))
    return out


def shot_groups(train_counts: Sequence[int]) -> dict[str, list[int]]:
    """The classes of each shot group (`dnet_tune.shot_groups`: names and limits), by training
    count; every group is a key, empty or not."""
    groups: dict[str, list[int]] = {g: [] for g in SHOT_GROUPS}
    for c, n in enumerate(train_counts):
        groups[shot_group(n)].append(c)
    return groups


def class_indices(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Indices of every class in file order (the order the CIFAR-LT constructions rely on)."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(num_classes + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(num_classes)]


def shuffled_class_indices(
    labels: np.ndarray, num_classes: int, seed: int
) -> list[np.ndarray]:
    """Per-class indices in a fixed random order, for sources whose file order means nothing."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(idx) for idx in class_indices(labels, num_classes)]


class ShortClassError(UserError):
    """A class holds fewer images than the profile needs; builders add a dataset-specific hint."""

    def __init__(self, cls: int, have: int, train: int, meta: int, val: int) -> None:
        self.cls, self.have, self.train, self.meta, self.val = cls, have, train, meta, val
        super().__init__(
            f"class {cls} has {have} images, the profile needs {train} train + {meta} meta"
            f" + {val} val"
        )


def carve(
    per_class: Sequence[np.ndarray],
    train_counts: Sequence[int],
    meta_per_class: int,
    val_per_class: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split each class into LT train, H and V index sets, pairwise disjoint.

    H is the last `meta_per_class` items of the class and V the `val_per_class` items just
    before H, so H matches the authors' "last 25 of every class"; train is the first n_i items,
    so a balanced-then-truncated profile keeps the standard CIFAR-LT images. Returns index
    arrays (train, meta, val), each sorted, i.e. in source order.
    """
    if len(per_class) != len(train_counts):
        raise ValueError("one train count per class expected")
    train, meta, val = [], [], []
    for c, (idx, n) in enumerate(zip(per_class, train_counts, strict=True)):
        have = len(idx)
        if n < 1:
            raise UserError(
                f"class {c} would get {n} training images; lower data.imbalance"
            )
        if n + meta_per_class + val_per_class > have:
            raise ShortClassError(c, have, n, meta_per_class, val_per_class)
        end_v = have - meta_per_class
        train.append(idx[:n])
        meta.append(idx[end_v:])
        val.append(idx[end_v - val_per_class : end_v])

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    return cat(train), cat(meta), cat(val)


def carve_with_test(
    name: str,
    per_class: Sequence[np.ndarray],
    test_per_class: int,
    meta_per_class: int,
    val_per_class: int,
    imbalance: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For sources without an official test split: a balanced test set first, then `carve`.

    Per class (already in a fixed order): the first `test_per_class` items are test; the rest is
    carved with n_max = the smallest remainder minus H and V, so every class follows the profile
    exactly. Returns sorted index arrays (train, meta, val, test).
    """
    h, v, t = meta_per_class, val_per_class, test_per_class
    smallest = min(len(idx) for idx in per_class)
    n_max = smallest - t - h - v
    if n_max < 1:
        raise UserError(
            f"{name}: the smallest class has {smallest} images; it needs more than {t} test "
            f"+ {h} meta + {v} val (lower data.meta_per_class / data.val_per_class)"
        )
    counts = lt_counts(n_max, len(per_class), imbalance)
    if min(counts) < 1:
        raise UserError(
            f"{name}: imbalance {imbalance:g} leaves a class without training images "
            f"(largest class {n_max}); use data.imbalance <= {n_max}"
        )
    train, meta, val = carve([idx[t:] for idx in per_class], counts, h, v)
    test = np.sort(np.concatenate([idx[:t] for idx in per_class])).astype(np.int64)
    return train, meta, val, test
