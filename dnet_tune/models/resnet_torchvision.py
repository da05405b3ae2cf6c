"""ResNet-152 in torchvision's layout, so that torchvision's ImageNet weights load into it.

The Places-LT recipe fine-tunes an ImageNet-pretrained ResNet-152 (spec §6). Nothing is fetched
at run time: the user downloads torchvision's weights once and names the file in
`model.pretrained` (see `pretrained.py`). For that file to load as it is, every module here
carries torchvision's name and shape (`conv1`, `bn1`, `layer1.0.downsample.0`, ..., `fc`), the
stride sits on the 3×3 conv as in torchvision, and `forward` computes what torchvision's does up
to the pooled features.

The head differs on purpose: `fc` is a cosine classifier (as in the authors' Places-LT model and
this project's other ImageNet-style models), so its state has `fc.weight` only, shaped by the
run's class count. The pretrained file's `fc` (a 1000-class ImageNet layer) is therefore never
loaded: the head always starts fresh, and the log says so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dnet_tune.config import ModelConfig
from dnet_tune.models import resnet_imagenet
from dnet_tune.models.registry import MODELS
from dnet_tune.models.resnet_imagenet import CosineClassifier, init_convs, make_stages


class Bottleneck(resnet_imagenet.Bottleneck):
    """ResNet-50's bottleneck (stride on the 3×3 conv, as torchvision) under torchvision's
    names: the projection is `downsample`, and exists only where the shape changes (the first
    block of each stage), so its keys are those of torchvision's files."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__(in_planes, planes, stride)
        projection = self.shortcut
        del self.shortcut
        self.downsample: nn.Module | None = (
            None if isinstance(projection, nn.Identity) else projection)

    def identity(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)


class TorchvisionResNet(nn.Module):
    """Stem (`conv1`, `bn1`, max-pool), `layer1`…`layer4` of bottlenecks at 64/128/256/512 base
    width, global average pool, cosine head `fc`. He-normal (fan-out) conv init, BatchNorm at
    the identity, as torchvision initialises a network it has no weights for."""

    def __init__(self, layers: list[int], num_classes: int, in_channels: int = 3,
                 cosine_scale: float = 30.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, in_planes = make_stages(Bottleneck, layers)
        for i, stage in enumerate(stages):
            self.add_module(f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_planes
        self.fc = CosineClassifier(in_planes, num_classes, scale=cosine_scale)
        init_convs(self)

    @property
    def classifier(self) -> nn.Module:
        """The head under the name stage 2 looks for (torchvision calls it `fc`)."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 2048-d features, for a stage-2 head retrain on a frozen backbone."""
        out = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            out = getattr(self, name)(out)
        return torch.flatten(self.avgpool(out), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.forward_features(x))
        return out


@MODELS.register(
    "resnet152",
    description="ResNet-152 [3,8,36,3] in torchvision's layout (model.pretrained loads its "
                "ImageNet weights) + cosine head, ~58M backbone params",
    smoke_size=32,  # smallest cheap input size, used by the registry tests
    head="fc",  # the classifier: never taken from a pretrained file
)
def build_resnet152(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int
) -> nn.Module:
    return TorchvisionResNet([3, 8, 36, 3], num_classes, in_channels, cfg.cosine_scale)
