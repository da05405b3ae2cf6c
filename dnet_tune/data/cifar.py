"""CIFAR-10-LT and CIFAR-100-LT from the standard python-pickle files.

Files: `<data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}` and
`<data_dir>/cifar-100-python/{train,test,meta}` (what `dnet-tune data download` or the official
archives give). They are read through an unpickler that only admits numpy's array
reconstruction, because a pickle can otherwise run arbitrary code and data directories are often
shared or downloaded from mirrors.

Construction, per class in file order (H = data.meta_per_class, V = data.val_per_class):
H is the last H images of the class, V the V images just before H, and the LT train set the first
n_i images, `n_i = floor(n_max * IF**(-i/(C-1)))`. Profiles differ only in n_max:
- "standard": n_max = full - H - V (full = 5000 / 500). With H = V = 0 this is the usual CIFAR-LT
  (12,406 / 10,847 images at IF 100); H and V are taken out before imbalancing, as the authors do.
- "paper": n_max = full - H, the authors' construction (H = 25: 4975 / 475, i.e. 12,341 / 10,302
  images at IF 100). Class 0 then trains on everything but H, so V must be 0 (else an error says
  so); the class-0 budget is what the paper's numbers were obtained with.
The full class size is a constant, never inferred from the file: subsets of the real files (such as
`shared/data`) keep the first k images of each class, and any profile that needs more than a class
holds is an error naming the class rather than a silently different dataset. Note that on such a
subset "the last H images" are the last of the subset, not of the full class.
Test: the full official test set.
"""

from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnet_tune.config import DataConfig
from dnet_tune.data.base import LTDataset, Split, carved_splits
from dnet_tune.data.longtail import ShortClassError, carve, class_indices, lt_counts
from dnet_tune.data.registry import DATASETS, resolve_data_dir
from dnet_tune.errors import UserError

# What numpy arrays (and Python-3-written protocol-2 bytes) need, bound to the objects themselves
# so that no module is imported by name while unpickling.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_SCALAR = np.int64(0).__reduce__()[0]
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes at protocol 2
}


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except numpy's array reconstruction, before anything is called."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load '{module}.{name}': CIFAR files hold only numpy arrays"
            ) from None


def load_pickle(path: Path) -> Any:
    """Unpickle a CIFAR file (latin1, as Python 2 wrote them); any failure is a `UserError`."""
    try:
        with open(path, "rb") as f:
            obj = ArrayOnlyUnpickler(f, encoding="latin1").load()
    except MemoryError:
        raise
    except Exception as exc:  # a corrupt or hostile file: say which one, no traceback
        raise UserError(f"cannot read CIFAR file {path}: {exc}") from None
    if isinstance(obj, dict):
        obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class _Spec:
    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    names_key: str
    label_key: str
    num_classes: int
    full: int  # images per class in the complete official train split
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    download: str


CIFAR10 = _Spec(
    "cifar10_lt", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",), "batches.meta", "label_names", "labels", 10, 5000,
    (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar10",
)
CIFAR100 = _Spec(
    "cifar100_lt", "cifar-100-python", ("train",), ("test",), "meta", "fine_label_names",
    "fine_labels", 100, 500, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar100",
)


def _read(spec: _Spec, folder: Path, files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for fname in files:
        path = folder / fname
        obj = load_pickle(path)
        if not isinstance(obj, dict) or "data" not in obj or spec.label_key not in obj:
            raise UserError(f"{path} is not a CIFAR file (needs 'data' and '{spec.label_key}')")
        x = np.asarray(obj["data"])
        y = np.asarray(obj[spec.label_key], dtype=np.int64)
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise UserError(f"{path}: 'data' must be uint8 N×3072 with one label per row")
        if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise UserError(f"{path}: labels must lie in 0..{spec.num_classes - 1}")
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _images(x: np.ndarray, idx: np.ndarray | None = None) -> torch.Tensor:
    rows = x if idx is None else x[idx]
    return torch.from_numpy(np.ascontiguousarray(rows).reshape(-1, 3, 32, 32))


def _split(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> Split:
    return Split(labels=y[idx].astype(np.int64), images=_images(x, idx))


def _short_class_message(
    spec: _Spec, err: ShortClassError, folder: Path, names: list[str], root: Path
) -> str:
    label = f"class {err.cls}" + (f" ({names[err.cls]})" if err.cls < len(names) else "")
    head = (
        f"{spec.name}: {label} has {err.have} images in {folder}, the profile needs "
        f"{err.train} train + {err.meta} meta + {err.val} val"
    )
    if err.train + err.meta + err.val > spec.full:
        hint = (
            f"a class has only {spec.full} images even in the full CIFAR files; lower "
            "data.meta_per_class / data.val_per_class (profile 'paper' needs "
            "data.val_per_class=0) or use data.profile=standard"
        )
    else:
        hint = (
            "these files hold a subset of CIFAR; set data.imbalance >= 100 or use the full "
            f"CIFAR files (`dnet-tune data download {spec.download} --data-dir {root}`)"
        )
    return f"{head}; {hint}"


def build_cifar_lt(spec: _Spec, cfg: DataConfig) -> LTDataset:
    root = resolve_data_dir(cfg)
    folder = root / spec.folder
    needed = (*spec.train_files, *spec.test_files)
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise UserError(
            f"{spec.name}: CIFAR files not found in {folder} (missing {missing[0]}); run "
            f"`dnet-tune data download {spec.download} --data-dir {root}`"
        )
    names: list[str] = []
    if (folder / spec.meta_file).is_file():
        meta = load_pickle(folder / spec.meta_file)
        if isinstance(meta, dict):
            names = [str(n) for n in meta.get(spec.names_key, [])]
    if len(names) != spec.num_classes:
        names = [str(c) for c in range(spec.num_classes)]

    x_train, y_train = _read(spec, folder, spec.train_files)
    x_test, y_test = _read(spec, folder, spec.test_files)

    h, v = cfg.meta_per_class, cfg.val_per_class
    n_max = spec.full - h - v if cfg.profile == "standard" else spec.full - h
    if n_max < 1:
        raise UserError(
            f"{spec.name}: meta_per_class + val_per_class must leave training images "
            f"(a class has {spec.full})"
        )
    counts = lt_counts(n_max, spec.num_classes, cfg.imbalance)
    try:
        tr, me, va = carve(class_indices(y_train, spec.num_classes), counts, h, v)
    except ShortClassError as err:
        raise UserError(_short_class_message(spec, err, folder, names, root)) from None

    return LTDataset(
        name=spec.name,
        num_classes=spec.num_classes,
        **carved_splits(lambda idx: _split(x_train, y_train, idx), tr, me, va),
        test=Split(labels=y_test.astype(np.int64), images=_images(x_test)),
        mean=spec.mean,
        std=spec.std,
        image_size=32,
        in_channels=3,
        class_names=names,
    )


CIFAR_RECIPE: dict[str, Any] = {
    "data": {
        "imbalance": 100.0,
        "meta_per_class": 25,
        "val_per_class": 25,
        "profile": "standard",
        "augment": "autoaugment_cutout",  # §6: crop(pad 4)+flip+AutoAugment+Cutout
        "batch_size": 128,
        "meta_batch_size": 100,
    },
    "model": {"name": "resnet32"},
    "method": {"base_loss": "ce", "acc_refresh": "after_epoch", "lam": 0.3},
    "dn": {"hidden": [128, 128], "bias": False, "lr": 1e-5, "weight_decay": 1e-4},
    "optim": {
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "nesterov": False,
        "schedule": "step",
        "warmup_epochs": 5,
        "milestone_fractions": [0.8, 0.9],  # 160 and 180 of 200; 48 and 54 of 60
        "gamma": 0.01,
    },
    "train": {"epochs": 200},
    # §6 stage 2 for CIFAR (off unless stage2.enabled): the authors' stage-2 script
    "stage2": {"epochs": 50, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4,
               "retrain_head": True, "samples_per_visit": 4},
}


for _spec, _title in ((CIFAR10, "CIFAR-10-LT"), (CIFAR100, "CIFAR-100-LT")):
    DATASETS.add(_spec.name, partial(build_cifar_lt, _spec), recipe=CIFAR_RECIPE,
                 description=f"{_title} from the python pickles; exponential profile, "
                             f"ResNet-32 recipe")
