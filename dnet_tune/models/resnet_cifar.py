"""CIFAR ResNets (He et al. 2016, §4.2): the CIFAR-LT backbone of the Difficulty-Net recipe.

Option-A shortcuts (strided subsampling plus zero channel padding) are kept rather than 1×1
projections because they add no parameters: ResNet-32 stays at ~0.46M parameters, the size every
CIFAR-LT result in the literature is quoted for, so numbers remain comparable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dnet_tune.config import ModelConfig
from dnet_tune.models.registry import MODELS


class ShortcutA(nn.Module):
    """Parameter-free shortcut: take every `stride`-th pixel and zero-pad the new channels.

    The padding is split evenly on both sides of the channel axis (He et al. do not fix the
    placement; an even split is the common reading and keeps the identity channels centred).
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad_front = extra // 2
        self.pad_back = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))


class CifarBasicBlock(nn.Module):
    """3×3-3×3 residual block. Out-of-place ops only, so forward-mode AD and `functional_call`
    never see a parameter or saved activation overwritten."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = (
            ShortcutA(in_planes, planes, stride)
            if stride != 1 or in_planes != planes
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """3 stages of `blocks` basic blocks at 16/32/64 channels, global average pool, linear head.

    Depth = 6·blocks + 2 (ResNet-20: 3, ResNet-32: 5). Kaiming-normal init for conv and linear
    weights as in He et al.; BN starts at the identity (weight 1, bias 0).
    """

    def __init__(self, blocks: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers: list[nn.Module] = []
        in_planes = 16
        for i, planes in enumerate((16, 32, 64)):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(CifarBasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 64
        self.classifier = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 64-d features, for a stage-2 head retrain on a frozen backbone."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return torch.flatten(self.pool(out), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.forward_features(x))
        return out


@MODELS.register(
    "resnet20",
    description="CIFAR ResNet-20 (16/32/64, option-A), ~0.27M params at 10 classes",
    smoke_size=32,  # smallest cheap input size, used by the registry tests
)
def build_resnet20(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int
) -> nn.Module:
    return CifarResNet(3, num_classes, in_channels)


@MODELS.register(
    "resnet32",
    description="CIFAR ResNet-32 (16/32/64, option-A), ~0.46M params at 10 classes",
    smoke_size=32,  # smallest cheap input size, used by the registry tests
)
def build_resnet32(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int
) -> nn.Module:
    return CifarResNet(5, num_classes, in_channels)
