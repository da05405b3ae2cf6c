"""`dnet-tune data download`: fetch the CIFAR pickles into the layout the builders read.

Only CIFAR can be fetched automatically (torchvision's mirror and checksums); ImageNet-LT and
Places-LT need licensed images the user obtains, so for them the error explains the layout instead.
"""

from __future__ import annotations

from pathlib import Path

from dnet_tune.config import DataConfig
from dnet_tune.data.registry import resolve_data_dir
from dnet_tune.errors import UserError

_ALIASES = {"cifar10": "cifar10", "cifar10_lt": "cifar10", "cifar100": "cifar100",
            "cifar100_lt": "cifar100"}


def download(name: str, data_dir: str | Path | None = None) -> Path:
    """Download CIFAR-10/100 (train and test) under `data_dir` (None: the builders' default)."""
    key = _ALIASES.get(name)
    root = resolve_data_dir(DataConfig(data_dir=str(data_dir) if data_dir else None))
    if key is None:
        if name in ("imagenet_lt", "places_lt", "folder_lt", "digits_lt"):
            raise UserError(
                f"{name} cannot be downloaded by dnet-tune: digits_lt is bundled with "
                "scikit-learn; for imagenet_lt/places_lt/folder_lt put the images and lists "
                f"under {root} as described in dnet_tune/data/lists.py"
            )
        raise UserError(f"unknown download '{name}'; choose cifar10 or cifar100")
    from torchvision import datasets

    root.mkdir(parents=True, exist_ok=True)
    cls = datasets.CIFAR10 if key == "cifar10" else datasets.CIFAR100
    try:
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except (OSError, RuntimeError) as exc:
        raise UserError(f"downloading {key} into {root} failed: {exc}") from None
    return root / ("cifar-10-batches-py" if key == "cifar10" else "cifar-100-python")
