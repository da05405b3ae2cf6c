"""Classifier backbones f_θ, built by name through `create_model` (see `registry`)."""

from dnet_tune.models import (  # noqa: F401  (registration)
    resnet_cifar,
    resnet_imagenet,
    resnet_torchvision,
    small_cnn,
)
from dnet_tune.models.registry import MODELS, create_model, list_models

__all__ = ["MODELS", "create_model", "list_models"]
