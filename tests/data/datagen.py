"""Writers of synthetic data in the exact on-disk layouts the builders read.

CIFAR files are written at full class size (5000 / 500 per class) because the profile's n_max is
the full class size by design; each image's first bytes encode (index in class, label, is_test) so
tests can check identities, disjointness and "first n in file order" from the pixels alone.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_KINDS = {  # name: (folder, num_classes, per_class, train files, label key)
    "cifar10": ("cifar-10-batches-py", 10, 5000, 5, "labels"),
    "cifar100": ("cifar-100-python", 100, 500, 1, "fine_labels"),
}


def encode_ids(labels: np.ndarray, is_test: bool) -> np.ndarray:
    """uint8 N×3072 rows whose first 4 bytes are (rank % 256, rank // 256, label, is_test)."""
    n = len(labels)
    rank = np.zeros(n, dtype=np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    data = np.zeros((n, 3072), dtype=np.uint8)
    data[:, 0] = rank % 256
    data[:, 1] = rank // 256
    data[:, 2] = labels
    data[:, 3] = int(is_test)
    return data


def decode_ids(images) -> list[tuple[int, int, int]]:
    """(label, rank in class, is_test) per image of a uint8 N×3×32×32 tensor."""
    flat = images.reshape(len(images), 3072)[:, :4].numpy().astype(np.int64)
    return [(int(r[2]), int(r[0] + 256 * r[1]), int(r[3])) for r in flat]


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(
    root: Path, kind: str, per_class: int | list[int] | None = None, test_per_class: int = 20
) -> Path:
    """Write CIFAR-10 or -100 pickles under `root` (labels interleaved by a fixed permutation)."""
    folder, classes, full, n_files, key = CIFAR_KINDS[kind]
    counts = per_class if isinstance(per_class, list) else [per_class or full] * classes
    rng = np.random.default_rng(1)
    labels = rng.permutation(np.repeat(np.arange(classes), counts))
    test_labels = rng.permutation(np.repeat(np.arange(classes), test_per_class))
    (root / folder).mkdir(parents=True, exist_ok=True)
    data = encode_ids(labels, False)
    parts = np.array_split(np.arange(len(labels)), n_files)
    train_names = [f"data_batch_{i + 1}" for i in range(n_files)]
    if kind == "cifar100":
        train_names = ["train"]
    for name, idx in zip(train_names, parts, strict=True):
        obj = {"batch_label": name, "data": data[idx], key: labels[idx].tolist(),
               "filenames": [f"img_{i}.png" for i in idx]}
        if kind == "cifar100":
            obj["coarse_labels"] = (labels[idx] // 5).tolist()
        _dump(root / folder / name, obj)
    test = {"batch_label": "test", "data": encode_ids(test_labels, True),
            key: test_labels.tolist(), "filenames": ["t.png"] * len(test_labels)}
    if kind == "cifar100":
        test["coarse_labels"] = (test_labels // 5).tolist()
    _dump(root / folder / ("test_batch" if kind == "cifar10" else "test"), test)
    if kind == "cifar10":
        _dump(root / folder / "batches.meta",
              {"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": 10000})
    else:
        _dump(root / folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                       "coarse_label_names": [f"s{i}" for i in range(20)]})
    return root


def write_image(path: Path, color: tuple[int, int, int], size: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size, size + 4, 3), dtype=np.uint8)
    arr[...] = color
    arr[::3, ::2] = 255 - np.asarray(color, dtype=np.uint8)  # some texture for the crops
    Image.fromarray(arr).save(path)


def write_oltr(root: Path, folder: str, train_counts: list[int], val_per_class: int,
               test_per_class: int, ext: str = "jpg") -> Path:
    """An OLTR layout: `<root>/<folder>/<folder>_{train,val,test}.txt` plus the images."""
    base = root / folder
    c = len(train_counts)
    splits = {"train": ("train", train_counts), "val": ("train", [val_per_class] * c),
              "test": ("val", [test_per_class] * c)}
    for split, (img_dir, counts) in splits.items():
        lines = []
        for c, n in enumerate(counts):
            for k in range(n):
                rel = f"{img_dir}/cls{c:02d}/{split}_{k:03d}.{ext}"
                write_image(base / rel, (40 * c % 256, 10 * k % 256, 100))
                lines.append(f"{rel} {c}")
        (base / f"{folder}_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_folder(root: Path, per_class: list[int]) -> Path:
    for c, n in enumerate(per_class):
        for k in range(n):
            ext = "png" if k % 2 else "jpg"
            write_image(root / f"class_{c}" / f"img_{k:03d}.{ext}", (60 * c % 256, 7 * k % 256, 30))
    return root
