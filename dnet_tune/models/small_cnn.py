"""A tiny CNN for 8×8 grey digits: the CPU-speed backbone for tests, smoke runs and searches.

It carries BatchNorm on purpose: the virtual step of Difficulty-Net must not disturb real BN
running statistics, and a backbone without BN would let that bug go unnoticed in fast runs.
"""

from __future__ import annotations

import torch
from torch import nn

from dnet_tune.config import ModelConfig
from dnet_tune.models.registry import MODELS


class SmallCNN(nn.Module):
    """Two 3×3 conv-BN-ReLU layers, a 2×2 max-pool and a linear classifier.

    The pooled map is resized adaptively to 4×4 so the classifier width does not depend on the
    image size (it is a no-op for 8×8 inputs, the case this model is sized for).
    """

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.feature_dim = 2 * width * 16
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, for a stage-2 head retrain on a frozen backbone."""
        out: torch.Tensor = self.features(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.forward_features(x))
        return out


@MODELS.register(
    "small_cnn",
    description="2-conv BN CNN for 8x8 digits (fast CPU runs), ~29K params at 10 classes",
    smoke_size=8,  # smallest cheap input size, used by the registry tests
)
def build_small_cnn(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int
) -> nn.Module:
    return SmallCNN(num_classes, in_channels)
