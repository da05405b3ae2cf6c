"""Fixtures with synthetic data for every registered dataset (no network, no shared data)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from datagen import write_cifar, write_folder, write_oltr

from dnet_tune.config import DataConfig


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Full-size synthetic CIFAR-10 and CIFAR-100 (50,000 train rows each), written once."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root, "cifar10")
    write_cifar(root, "cifar100")
    return root


@pytest.fixture
def make_data(tmp_path: Path, cifar_root: Path) -> Callable[[str], DataConfig]:
    """Tiny data for a registered dataset name -> a DataConfig that builds it."""

    def make(name: str) -> DataConfig:
        if name in ("cifar10_lt", "cifar100_lt"):
            return DataConfig(name=name, data_dir=str(cifar_root), imbalance=100,
                              meta_per_class=25, val_per_class=25)
        if name == "digits_lt":
            return DataConfig(name=name)
        if name == "imagenet_lt":
            write_oltr(tmp_path, "ImageNet_LT", [6, 3, 2], 4, 2)
            return DataConfig(name=name, data_dir=str(tmp_path), meta_per_class=2, val_per_class=2)
        if name == "places_lt":
            write_oltr(tmp_path, "Places_LT", [5, 4, 1], 3, 2)
            return DataConfig(name=name, data_dir=str(tmp_path), meta_per_class=1, val_per_class=2)
        if name == "folder_lt":
            write_folder(tmp_path / "tree", [12, 11, 13])
            return DataConfig(name=name, data_dir=str(tmp_path / "tree"), imbalance=4,
                              meta_per_class=1, val_per_class=1)
        pytest.fail(f"no tiny-data writer for dataset '{name}': add one to tests/data/conftest.py")

    return make
