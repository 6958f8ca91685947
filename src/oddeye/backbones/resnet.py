"""ResNet-18/50 and Wide-ResNet-50-2 with torchvision's module names (its weight files load).

Layout follows the published architecture (He et al. 2016, stride on the 3x3 conv of the
bottleneck as in torchvision's "v1.5"; Zagoruyko & Komodakis 2016 for the wide variant).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Backbone, Stage
from .registry import register_backbone


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut."""

    expansion = 1
    bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, base_width: int = 64) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4) with a shortcut; ``base_width`` widens it."""

    expansion = 4
    bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, base_width: int = 64) -> None:
        super().__init__()
        width = planes * base_width // 64
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet(Backbone):
    """ImageNet ResNet: 7x7/2 stem, 3x3/2 max-pool, four stages (strides 4..32), linear head."""

    bn_pairs = (("conv1", "bn1"),)
    tap_aliases = {"layer1": "s4", "layer2": "s8", "layer3": "s16", "layer4": "s32"}

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, ...],
                 base_width: int = 64, num_classes: int = 1000) -> None:
        super().__init__()
        self._cin = 64
        self._base_width = base_width
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, depths[0], 1)
        self.layer2 = self._make_layer(block, 128, depths[1], 2)
        self.layer3 = self._make_layer(block, 256, depths[2], 2)
        self.layer4 = self._make_layer(block, 512, depths[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self.stage_channels = [64] + [p * block.expansion for p in (64, 128, 256, 512)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, n: int,
                    stride: int) -> nn.Sequential:
        cout = planes * block.expansion
        downsample = None
        if stride != 1 or self._cin != cout:
            downsample = nn.Sequential(_conv1x1(self._cin, cout, stride), nn.BatchNorm2d(cout))
        blocks = [block(self._cin, planes, stride, downsample, self._base_width)]
        self._cin = cout
        blocks += [block(cout, planes, 1, None, self._base_width) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def feature_stages(self) -> list[Stage]:
        """Stem (s2), max-pool + layer1 (s4), layer2 (s8), layer3 (s16), layer4 (s32)."""
        c = self.stage_channels
        return [
            Stage("s2", nn.Sequential(self.conv1, self.bn1, self.relu), c[0], 2),
            Stage("s4", nn.Sequential(self.maxpool, self.layer1), c[1], 4),
            Stage("s8", self.layer2, c[2], 8),
            Stage("s16", self.layer3, c[3], 16),
            Stage("s32", self.layer4, c[4], 32),
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000) for ImageNet-normalised (N, 3, H, W) input."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_backbone("resnet18")
def resnet18() -> ResNet:
    """ResNet-18 (11.7 M parameters)."""
    return ResNet(BasicBlock, (2, 2, 2, 2))


@register_backbone("resnet50")
def resnet50() -> ResNet:
    """ResNet-50 (25.6 M parameters)."""
    return ResNet(Bottleneck, (3, 4, 6, 3))


@register_backbone("wide_resnet50_2")
def wide_resnet50_2() -> ResNet:
    """Wide-ResNet-50-2: ResNet-50 with twice as wide bottlenecks (68.9 M parameters)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), base_width=128)
