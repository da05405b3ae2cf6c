"""digits_lt: a long-tailed version of scikit-learn's bundled 8×8 digits, for CPU-speed runs.

It ships with scikit-learn (no download), so tests, smoke runs and searches can exercise the whole
pipeline offline in seconds. The split is a pure function of the config: the per-class order is a
fixed shuffle (seed `SPLIT_SEED`, deliberately not the training seed, so changing `train.seed`
changes the run but never the data). Per class, in that order: `TEST_PER_CLASS` test images
(balanced), then train/H/V carved like CIFAR (H = last meta_per_class, V = the val_per_class
before them, train = first n_i). n_max is the smallest class's remainder (114 with the defaults),
so every class follows the profile exactly; with the defaults (IF 20, H = V = 10) the shot groups
are many [0], medium [1..5], few [6..9]. `data.profile` does not apply and is ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dnet_tune.config import DataConfig
from dnet_tune.data.base import LTDataset, Split, carved_splits
from dnet_tune.data.longtail import carve_with_test, shuffled_class_indices
from dnet_tune.data.registry import DATASETS

SPLIT_SEED = 0
TEST_PER_CLASS = 40
NUM_CLASSES = 10


def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16; scale to the 0..255 uint8 range every other dataset uses.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return images, bunch.target.astype(np.int64)


DIGITS_RECIPE: dict[str, Any] = {
    "data": {
        "imbalance": 20.0,
        "meta_per_class": 10,
        "val_per_class": 10,
        "augment": "none",
        "batch_size": 64,
        "meta_batch_size": 100,
    },
    "model": {"name": "small_cnn"},
    "method": {"base_loss": "ce", "acc_refresh": "after_epoch"},
    "dn": {"hidden": [128, 128], "bias": False, "lr": 1e-3, "weight_decay": 1e-4},
    "optim": {
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "warmup_epochs": 0,
    },
    "train": {"epochs": 30},
}


@DATASETS.register(
    "digits_lt",
    recipe=DIGITS_RECIPE,
    description="scikit-learn 8×8 digits made long-tailed (bundled, offline; CPU-fast)",
)
def digits_lt(cfg: DataConfig) -> LTDataset:
    images, labels = _load()
    per_class = shuffled_class_indices(labels, NUM_CLASSES, SPLIT_SEED)
    tr, me, va, test_idx = carve_with_test("digits_lt", per_class, TEST_PER_CLASS,
                                           cfg.meta_per_class, cfg.val_per_class, cfg.imbalance)

    def split(idx: np.ndarray) -> Split:
        return Split(labels=labels[idx], images=torch.from_numpy(np.ascontiguousarray(images[idx])))

    return LTDataset(
        name="digits_lt",
        num_classes=NUM_CLASSES,
        **carved_splits(split, tr, me, va),
        test=split(test_idx),
        mean=(0.3053,),
        std=(0.3759,),
        image_size=8,
        in_channels=1,
        class_names=[str(c) for c in range(NUM_CLASSES)],
    )
