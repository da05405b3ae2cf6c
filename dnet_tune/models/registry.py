"""The model registry: config name -> backbone builder.

Builders live next to their architectures and register themselves with `@MODELS.register`;
an entry's `head` names its classifier module (default `classifier`), which `model.pretrained`
never loads. This
module is a leaf: the package's `__init__` imports the architecture modules for that side effect,
so importing anything from `dnet_tune.models` sees every model, without an import loop.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from dnet_tune.config import ModelConfig
from dnet_tune.models.pretrained import load_pretrained
from dnet_tune.registry import Registry

ModelBuilder = Callable[[ModelConfig, int, int, int], nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")


def create_model(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int
) -> nn.Module:
    """Build `cfg.name`, then load `cfg.pretrained` into it when set (see `pretrained`); an
    unknown name is a `UserError` naming the registered choices."""
    entry = MODELS.entry(cfg.name)
    model = entry.fn(cfg, num_classes, in_channels, image_size)
    if cfg.pretrained is not None:
        head = str(entry.info.get("head", "classifier"))
        load_pretrained(model, cfg.name, cfg.pretrained, head, list(cfg.reinit))
    return model


def list_models() -> list[tuple[str, str]]:
    """(name, description) pairs for `--help`-style listings, sorted by name."""
    return [(n, str(MODELS.entry(n).info.get("description", ""))) for n in MODELS.names()]
