"""ImageNet-style ResNets trained from scratch with a cosine classifier (ImageNet-LT recipe).

The cosine head follows the released Difficulty-Net code (scale s = 30): normalising both features
and class weights removes the head's bias towards frequent classes through larger weight norms,
which is a large part of why plain from-scratch ResNets do well on long-tailed ImageNet.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dnet_tune.config import ModelConfig
from dnet_tune.models.registry import MODELS


class CosineClassifier(nn.Module):
    """logits = s · normalize(x) · normalize(W)ᵀ, no bias; every logit lies in [−s, s].

    Normalisation happens in the forward pass (never by rewriting `weight`), so the module is
    safe under `torch.func.functional_call` with substituted parameters.
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        # Same spread as nn.Linear: row norms near 0.6. The scale does not change the logits, but
        # it sets the effective step size on the direction of W (gradient ∝ 1/‖w‖).
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, scale={self.scale}"


def _downsample(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """1×1 projection shortcut (option B), used only where shape changes."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class BasicBlock(nn.Module):
    """3×3-3×3 residual block (ResNet-10/18/34). Out-of-place ops only: safe for forward-mode AD."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _downsample(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1-3×3-1×1 block with 4× expansion (ResNet-50). Stride sits on the 3×3 conv (the
    "v1.5" placement), which is the common from-scratch baseline and slightly more accurate."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _downsample(in_planes, out_planes, stride)

    def identity(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.identity(x))


def make_stages(block: type[BasicBlock] | type[Bottleneck], layers: list[int],
                in_planes: int = 64) -> tuple[list[nn.Sequential], int]:
    """The four stages at 64/128/256/512 base width (stride 2 opens stages 2-4), and the width
    they end at."""
    stages = []
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
        blocks = []
        for j in range(n):
            blocks.append(block(in_planes, planes, 2 if i > 0 and j == 0 else 1))
            in_planes = planes * block.expansion
        stages.append(nn.Sequential(*blocks))
    return stages, in_planes


def init_convs(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions, as torchvision initialises a network it has no weights
    for."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class ImageNetResNet(nn.Module):
    """7×7/2 stem + 3×3/2 max-pool, four stages at 64/128/256/512 base width, global average pool,
    cosine classifier. Adaptive pooling lets small test images (e.g. 64×64) run unchanged."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int,
        in_channels: int = 3,
        cosine_scale: float = 30.0,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, in_planes = make_stages(block, layers)
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_planes
        self.classifier = CosineClassifier(in_planes, num_classes, scale=cosine_scale)
        init_convs(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, for a stage-2 head retrain on a frozen backbone."""
        out = self.stages(self.stem(x))
        return torch.flatten(self.pool(out), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.forward_features(x))
        return out


@MODELS.register(
    "resnet10",
    description="ImageNet ResNet-10 [1,1,1,1] + cosine head, ~4.9M backbone params",
    smoke_size=64,  # smallest cheap input size, used by the registry tests
)
def build_resnet10(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int
) -> nn.Module:
    return ImageNetResNet(BasicBlock, [1, 1, 1, 1], num_classes, in_channels, cfg.cosine_scale)


@MODELS.register(
    "resnet50",
    description="ImageNet ResNet-50 [3,4,6,3] + cosine head, ~23.5M backbone params",
    smoke_size=64,  # smallest cheap input size, used by the registry tests
)
def build_resnet50(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int
) -> nn.Module:
    return ImageNetResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, cfg.cosine_scale)
