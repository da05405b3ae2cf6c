"""What more than one command declares: the data options (train, data describe) and the method
names their help texts list."""

from __future__ import annotations

import argparse
from typing import Any


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imbalance", type=float, help="imbalance factor n_max/n_min")
    p.add_argument("--meta-per-class", type=int, help="images per class in the meta set H")
    p.add_argument("--val-per-class", type=int, help="images per class in the validation set V")
    p.add_argument("--profile", choices=["standard", "paper"],
                   help="paper: the authors' counts (n_max 4975/475, no validation split)")
    p.add_argument("--data-dir", help="dataset root (default $DNET_DATA_DIR or ~/.cache/dnet-tune)")


def data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = {"imbalance": "imbalance", "meta_per_class": "meta_per_class",
            "val_per_class": "val_per_class", "profile": "profile", "data_dir": "data_dir"}
    data = {k: getattr(args, a) for a, k in keys.items() if getattr(args, a, None) is not None}
    if data.get("profile") == "paper":
        # the authors' construction spends every class-0 image on train + H: there is no V
        data.setdefault("val_per_class", 0)
    return {"data": data} if data else {}


class _FromRegistry:
    """Text that is only computed when argparse formats a help page: the methods registry
    imports torch (seconds), which neither parsing nor `dnet-tune --help` may pay."""

    def __init__(self, text: Any) -> None:
        self.text = text

    def __str__(self) -> str:
        return str(self.text())


def _default_method() -> str:
    from dnet_tune.config import MethodConfig

    return MethodConfig().name


def _baselines() -> str:
    from dnet_tune.method.methods import METHODS

    return ", ".join(m for m in METHODS.names() if m != _default_method())


def method_help(action: argparse.Action, text: str) -> argparse.Action:
    """Give a flag the help `text`, whose `%(default_method)s` (the config's default method) and
    `%(baselines)s` (every other registered method) are read from the registry when a help page
    is shown. Set after `add_argument`: from Python 3.14 it expands a help string at once to
    check it, which would import torch for every command line."""
    vars(action).update(default_method=_FromRegistry(_default_method),
                        baselines=_FromRegistry(_baselines), help=text)
    return action
