"""Datasets (long-tailed splits with held-out meta and validation sets) and batch iterators.

Importing the package registers every dataset builder: `registry` is a leaf module, and the
builder modules imported here register themselves with it.
"""

from dnet_tune.data import cifar, digits, lists  # noqa: F401  (registration side effect)
from dnet_tune.data.base import LTDataset, Split
from dnet_tune.data.registry import (
    DATASETS,
    build_dataset,
    dataset_recipe,
    describe,
    list_datasets,
    resolve_data_dir,
    summary,
)

__all__ = [
    "DATASETS",
    "LTDataset",
    "Split",
    "build_dataset",
    "dataset_recipe",
    "describe",
    "list_datasets",
    "resolve_data_dir",
    "summary",
]
