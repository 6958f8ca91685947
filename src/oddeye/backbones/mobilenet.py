"""MobileNetV2 (width 1.0) with torchvision's module names, so its weight file loads strictly.

Architecture from Sandler et al. 2018: a 3x3/2 stem, 17 inverted-residual blocks (expand 1x1,
depthwise 3x3, linear 1x1 projection; ReLU6), a 1x1 conv to 1280 channels and a linear head.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Backbone, Expansion, Stage
from .registry import register_backbone

# (expansion t, output channels c, repeats n, first stride s) of the published architecture.
_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU6, children named 0, 1, 2."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand 1x1 (skipped when t == 1), depthwise 3x3, linear 1x1; residual if shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.stride = stride
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(Backbone):
    """MobileNetV2: ``features`` (stem, 17 blocks, 1x1 head conv) and ``classifier``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU6(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(ConvBNReLU6(cin, 1280, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def feature_stages(self) -> list[Stage]:
        """features[0:2] (s2, 16 ch), [2:4] (s4, 24), [4:7] (s8, 32), [7:14] (s16, 96),
        [14:18] (s32, 320); the 1x1 head conv to 1280 channels belongs to the classifier."""
        f = self.features
        return [
            Stage("s2", f[0:2], 16, 2),
            Stage("s4", f[2:4], 24, 4),
            Stage("s8", f[4:7], 32, 8),
            Stage("s16", f[7:14], 96, 16),
            Stage("s32", f[14:18], 320, 32),
        ]

    def expansions(self) -> list[Expansion]:
        """``s2x`` .. ``s16x``: the expansion (1x1 conv + BN + ReLU6, 6x wider) of the block after
        each stride tap (96, 144, 192, 576 channels); ``s32x``: the 1x1 head conv (1280)."""
        f = self.features
        out = [Expansion(f"{s.name}x", s.name, f[i].conv[0], f[i].conv[0][0].out_channels)
               for s, i in zip(self.feature_stages()[:4], (2, 4, 7, 14), strict=True)]
        return out + [Expansion("s32x", "s32", f[18], 1280)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000) for ImageNet-normalised (N, 3, H, W) input."""
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


@register_backbone("mobilenet_v2")
def mobilenet_v2() -> MobileNetV2:
    """MobileNetV2, width 1.0 (3.5 M parameters)."""
    return MobileNetV2()
