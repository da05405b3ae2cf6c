"""The model registry: config name -> backbone builder.

Builders live next to their architectures and register themselves with `@MODELS.register`. This
module is a leaf: the package's `__init__` imports the architecture modules for that side effect,
so importing anything from `dnet_tune.models` sees every model, without an import loop.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from dnet_tune.config import ModelConfig
from dnet_tune.registry import Registry

ModelBuilder = Callable[[ModelConfig, int, int, int], nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")


def create_model(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int
) -> nn.Module:
    """Build `cfg.name`; an unknown name is a `UserError` naming the registered choices."""
    builder = MODELS.get(cfg.name)
    return builder(cfg, num_classes, in_channels, image_size)


def list_models() -> list[tuple[str, str]]:
    """(name, description) pairs for `--help`-style listings, sorted by name."""
    return [(n, str(MODELS.entry(n).info.get("description", ""))) for n in MODELS.names()]
