"""File-based datasets: ImageNet-LT and Places-LT (OLTR text lists) and any ImageFolder tree.

Images stay on disk and are decoded lazily by `file_batches.FileBatches`; splits carry absolute
paths.

Layout (one folder per dataset under the data directory; list paths are relative to it):

    <data_dir>/ImageNet_LT/ImageNet_LT_train.txt   ImageNet_LT_val.txt   ImageNet_LT_test.txt
    <data_dir>/ImageNet_LT/train/n01440764/n01440764_10026.JPEG ...   (ImageNet train)
    <data_dir>/ImageNet_LT/val/n01440764/ILSVRC2012_val_00029930.JPEG ... (ImageNet val, by wnid)
    <data_dir>/Places_LT/Places_LT_{train,val,test}.txt
    <data_dir>/Places_LT/train/airfield/00004851.jpg ...   <data_dir>/Places_LT/val/airfield/...

Each list line is `relative/path.jpg label` (Liu et al., OLTR, CVPR 2019). The train list is used
as is: it is already long-tailed, so `data.imbalance` and `data.profile` are ignored. H and V come
from the official LT val list (20 per class): per class, a fixed shuffle (seed `SPLIT_SEED`, not
the training seed) gives H = the first meta_per_class and V = the next val_per_class; test = the
test list. Places-LT's recipe is the paper's backbone, an ImageNet-pretrained ResNet-152 whose
last block (layer4.2) is retrained from scratch; the weights file is the user's to download and
name in `model.pretrained` (nothing is fetched at run time), and without it the run is refused in
one line (see `PLACES_NEEDS`).

folder_lt: `<data_dir>/<class>/*.{jpg,jpeg,png}`, classes sorted by folder name, and `data.data_dir`
must be set (the default cache holds other datasets). Per class, a fixed shuffle, then a balanced
test set of `TEST_FRACTION` of the smallest class, then train/H/V carved like CIFAR from the rest
with n_max = the smallest remainder and `data.imbalance`. Inputs are 112 px: custom folders are
usually small, and 112 px keeps a from-scratch ResNet-10 affordable.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dnet_tune.config import DataConfig
from dnet_tune.data.base import LTDataset, Split, carved_splits
from dnet_tune.data.longtail import carve_with_test, shuffled_class_indices
from dnet_tune.data.registry import DATASETS, resolve_data_dir
from dnet_tune.dotted import merge
from dnet_tune.errors import UserError

SPLIT_SEED = 0
TEST_FRACTION = 0.2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_list(path: Path, root: Path, name: str) -> tuple[list[str], np.ndarray]:
    """Parse an OLTR list into absolute paths and int64 labels; errors name file and line."""
    if not path.is_file():
        raise UserError(
            f"{name}: missing {path}; put the OLTR split lists there and the images under "
            f"{root} (layout: see dnet_tune/data/lists.py)"
        )
    paths: list[str] = []
    labels: list[int] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
            raise UserError(f"{path}:{lineno}: expected 'relative/path.jpg label', got {line!r}")
        paths.append(str(root / parts[0]))
        labels.append(int(parts[1]))
    if not paths:
        raise UserError(f"{name}: {path} lists no images")
    if not Path(paths[0]).is_file():
        raise UserError(
            f"{name}: {paths[0]} (first entry of {path.name}) does not exist; list paths are "
            f"relative to {root}"
        )
    return paths, np.asarray(labels, dtype=np.int64)


def _pick(paths: list[str], labels: np.ndarray, idx: np.ndarray) -> Split:
    return Split(labels=labels[idx], paths=[paths[i] for i in idx])


def build_oltr(cfg: DataConfig, name: str, folder: str, prefix: str) -> LTDataset:
    root = resolve_data_dir(cfg) / folder
    lists = {s: read_list(root / f"{prefix}_{s}.txt", root, name) for s in ("train", "val", "test")}
    train_paths, train_labels = lists["train"]
    num_classes = int(train_labels.max()) + 1
    counts = np.bincount(train_labels, minlength=num_classes)
    if (counts == 0).any():
        raise UserError(f"{name}: class {int(np.argmin(counts))} has no training images")
    for split in ("val", "test"):
        if lists[split][1].max() >= num_classes:
            raise UserError(f"{name}: {prefix}_{split}.txt has labels the train list lacks")

    val_paths, val_labels = lists["val"]
    h, v = cfg.meta_per_class, cfg.val_per_class
    meta_idx, hold_idx = [], []
    for c, idx in enumerate(shuffled_class_indices(val_labels, num_classes, SPLIT_SEED)):
        if len(idx) < h + v:
            raise UserError(
                f"{name}: class {c} has {len(idx)} images in {prefix}_val.txt, fewer than "
                f"data.meta_per_class + data.val_per_class = {h + v}"
            )
        meta_idx.append(idx[:h])
        hold_idx.append(idx[h : h + v])

    class_names = [""] * num_classes
    for p, y in zip(reversed(train_paths), reversed(train_labels.tolist()), strict=True):
        class_names[y] = "/".join(Path(p).relative_to(root).parts[1:-1])  # first one wins

    test_paths, test_labels = lists["test"]
    return LTDataset(
        name=name,
        num_classes=num_classes,
        train=Split(labels=train_labels, paths=train_paths),
        meta=_pick(val_paths, val_labels, np.sort(np.concatenate(meta_idx))),
        val=_pick(val_paths, val_labels, np.sort(np.concatenate(hold_idx))),
        test=Split(labels=test_labels, paths=test_paths),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=224,
        class_names=class_names,
    )


# What both OLTR recipes share (spec §6: DN Adam lr 1e-3 / wd 1e-4 with bias, SGD wd 5e-4).
_OLTR_RECIPE: dict[str, Any] = {
    "data": {"meta_per_class": 10, "val_per_class": 10, "augment": "crop_flip",
             "meta_batch_size": 100, "num_workers": 8},
    "model": {"cosine_scale": 30.0},
    "dn": {"bias": True, "lr": 1e-3, "weight_decay": 1e-4},
    "optim": {"momentum": 0.9, "weight_decay": 5e-4, "warmup_epochs": 0},
}

# Stage 2's label-aware smoothing: these lists fix the counts and ignore data.imbalance, so the
# table by imbalance factor (stage2.smoothing_for_imbalance) has nothing to read; the authors'
# stage-2 configs name the values instead (ImageNet-LT 0.3 / 0.0, Places-LT 0.4 / 0.1).
IMAGENET_RECIPE = merge(_OLTR_RECIPE, {
    "data": {"batch_size": 256},
    "model": {"name": "resnet10"},
    "method": {"base_loss": "balanced_softmax", "acc_refresh": "before_epoch"},
    "dn": {"hidden": [1024, 1024]},
    "optim": {"lr": 0.05, "nesterov": True, "schedule": "cosine"},
    "train": {"epochs": 180},
    "stage2": {"smoothing_head": 0.3, "smoothing_tail": 0.0},
})

# §6 Places-LT: ImageNet-pretrained ResNet-152 whose third layer4 block the authors replace by a
# freshly initialised one (their resnet152_fe drops layer4.2's weights and adds a new bottleneck
# of the same shape, after OLTR), cosine head, 30 epochs, lr 0.01, ×0.1 at 10 and 20. What still
# differs from the paper is listed in the README (one lr: theirs is 0.001 for the pretrained part).
PLACES_RECIPE = merge(_OLTR_RECIPE, {
    "data": {"batch_size": 128},
    "model": {"name": "resnet152", "reinit": ["layer4.2"]},
    "method": {"base_loss": "ce", "acc_refresh": "before_epoch"},
    "dn": {"hidden": [512, 512]},
    "optim": {"lr": 0.01, "nesterov": False, "schedule": "step",
              "milestone_fractions": [1 / 3, 2 / 3],  # 10 and 20 of 30
              "gamma": 0.1},
    "train": {"epochs": 30},
    "stage2": {"smoothing_head": 0.4, "smoothing_tail": 0.1},
})

# Why the Places recipe cannot run without the user's weights file (`check_dataset_config`).
PLACES_NEEDS = (
    "the recipe fine-tunes an ImageNet-pretrained ResNet-152 as the paper does, and nothing is "
    "downloaded at run time: download torchvision's IMAGENET1K_V1 weights (the ones the authors "
    "used: https://download.pytorch.org/models/resnet152-394f9c45.pth) and pass --set "
    "model.pretrained=PATH, or pass --model resnet50 for a from-scratch stand-in (not the "
    "paper's setting)"
)

FOLDER_RECIPE: dict[str, Any] = {
    "data": {"imbalance": 20.0, "meta_per_class": 10, "val_per_class": 10,
             "augment": "crop_flip", "batch_size": 64, "num_workers": 4},
    "model": {"name": "resnet10"},
    "method": {"base_loss": "ce", "acc_refresh": "after_epoch"},
    "optim": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"},
    "train": {"epochs": 30},
}


DATASETS.add("imagenet_lt", partial(build_oltr, name="imagenet_lt", folder="ImageNet_LT",
                                    prefix="ImageNet_LT"), recipe=IMAGENET_RECIPE,
             description="ImageNet-LT from the OLTR lists (1000 classes), ResNet-10 + Balanced "
                         "Softmax")
DATASETS.add("places_lt", partial(build_oltr, name="places_lt", folder="Places_LT",
                                  prefix="Places_LT"), recipe=PLACES_RECIPE,
             needs_pretrained={"resnet152": PLACES_NEEDS},
             description="Places-LT from the OLTR lists (365 classes), ImageNet-pretrained "
                         "ResNet-152 (model.pretrained: the user's weights file)")


@DATASETS.register(
    "folder_lt",
    recipe=FOLDER_RECIPE,
    description="any <data_dir>/<class>/*.jpg tree, made long-tailed with data.imbalance",
)
def folder_lt(cfg: DataConfig) -> LTDataset:
    if not cfg.data_dir:
        raise UserError("folder_lt: set data.data_dir to a folder with one sub-folder per class")
    root = Path(cfg.data_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"folder_lt: {root} is not a directory (expected {root}/<class>/*.jpg)")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths: list[str] = []
    labels: list[int] = []
    for c, d in enumerate(class_dirs):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"folder_lt: class folder {d} holds no .jpg/.jpeg/.png images")
        paths += [str(f) for f in files]
        labels += [c] * len(files)
    if len(class_dirs) < 2:
        raise UserError(f"folder_lt: {root} needs at least two class sub-folders")
    y = np.asarray(labels, dtype=np.int64)
    num_classes = len(class_dirs)
    per_class = shuffled_class_indices(y, num_classes, SPLIT_SEED)
    t = max(1, int(TEST_FRACTION * min(len(idx) for idx in per_class)))
    tr, me, va, test = carve_with_test("folder_lt", per_class, t, cfg.meta_per_class,
                                       cfg.val_per_class, cfg.imbalance)
    return LTDataset(
        name="folder_lt",
        num_classes=num_classes,
        **carved_splits(lambda idx: _pick(paths, y, idx), tr, me, va),
        test=_pick(paths, y, test),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=112,
        class_names=[d.name for d in class_dirs],
    )
