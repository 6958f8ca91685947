"""FeatureExtractor: a frozen, always-eval, truncated backbone returning feature taps by name."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, STRIDE_TAPS, Backbone
from .fold import fold_batchnorm
from .registry import BackboneError, build_backbone, create_backbone

#: Images per forward pass for inference on CPU, chosen by measurement (docs/backbones.md).
DEFAULT_BATCH = 4


class InputRenorm(nn.Module):
    """Per-channel affine map from ImageNet normalisation to the one a backbone was trained on."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        src_mean = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
        src_std = torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
        dst_mean = torch.tensor(tuple(mean)).reshape(1, 3, 1, 1)
        dst_std = torch.tensor(tuple(std)).reshape(1, 3, 1, 1)
        # x_pixel = x * src_std + src_mean; y = (x_pixel - dst_mean) / dst_std
        self.register_buffer("scale", src_std / dst_std, persistent=False)
        self.register_buffer("shift", (src_mean - dst_mean) / dst_std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def canonical_tap(backbone: Backbone, layer: str) -> str:
    """The tap name (``s2``..``s32``, or an expanded ``s8x``...) that ``layer`` refers to."""
    name = backbone.tap_aliases.get(layer, layer)
    expanded = [e.name for e in backbone.expansions()]
    if name not in STRIDE_TAPS and name not in expanded:
        known = list(STRIDE_TAPS) + expanded + list(backbone.tap_aliases)
        raise BackboneError(f"unknown feature layer {layer!r} for {type(backbone).__name__}; "
                            f"use one of {', '.join(known)}")
    return name


def feature_info(backbone: str) -> dict[str, tuple[int, int]]:
    """{tap name: (channels, stride)} of a backbone, aliases and expanded taps included, without
    loading weights.

    Built on the meta device, so it costs no memory; for heads that only need the shapes.
    """
    with torch.device("meta"):
        net = build_backbone(backbone)
    info = {s.name: (s.channels, s.stride) for s in net.feature_stages()}
    info.update({e.name: (e.channels, info[e.base][1]) for e in net.expansions()})
    info.update({alias: info[tap] for alias, tap in net.tap_aliases.items()})
    return info


class FeatureExtractor(nn.Module):
    """Frozen pretrained backbone cut after the deepest requested tap; forward -> {name: map}.

    Input is ImageNet-normalised (N, 3, H, W); backbones trained with another normalisation
    convert it internally. ``layers`` are stride names ``s2, s4, s8, s16, s32`` (ResNets also
    ``layer1..layer4``). ``fold_bn=False`` keeps BatchNorm layers (the module stays frozen and
    in eval mode either way). ``.channels[name]`` and ``.strides[name]`` describe the outputs.
    ``channels_last`` runs the convolutions in NHWC memory layout (1.2-2x faster on CPU,
    see docs/backbones.md); outputs are returned in the ordinary contiguous NCHW layout.

    ``pad`` (pixels, a multiple of every tap's stride) frames the image in the ImageNet mean
    colour before the backbone and crops each tap back to the image's own cells: without it the
    border cells see the convolutions' zero padding of *feature* maps, which makes them a
    population of their own (docs/backbones.md, "Input border"). ``crop=False`` hands the
    framed taps on uncropped, for a head that cuts the frame away itself after its own
    neighbourhood aggregation (PatchCore's default; ``oddeye.methods.base.attach_frame``).
    """

    def __init__(self, backbone: str, layers: Sequence[str],
                 weights: str | os.PathLike | None = "auto", fold_bn: bool = True, *,
                 channels_last: bool = True, pad: int = 0, crop: bool = True) -> None:
        super().__init__()
        if isinstance(layers, str) or not layers:
            raise BackboneError(f"layers must be a non-empty sequence of names, got {layers!r}")
        # building draws the default init from the global RNG; the caller's stream stays put
        with torch.random.fork_rng(devices=[]):
            net = create_backbone(backbone, weights)
        taps = {layer: canonical_tap(net, layer) for layer in layers}
        if fold_bn:
            fold_batchnorm(net)
        stages = net.feature_stages()
        order = [s.name for s in stages]
        # an expanded tap is its stride tap through a copy of the next block's expansion
        # (copied: that block may lie past the cut, or inside a stage it would share tensors with)
        expansions = {e.name: e for e in net.expansions() if e.name in taps.values()}
        base = {layer: expansions[t].base if t in expansions else t for layer, t in taps.items()}
        last = max(order.index(t) for t in base.values())
        self.backbone_name = backbone
        self.layers: tuple[str, ...] = tuple(dict.fromkeys(layers))
        self.folded = fold_bn
        self.stages = nn.ModuleList(s.module for s in stages[:last + 1])
        self._stage_of = {layer: order.index(tap) for layer, tap in base.items()}
        self._stage_stride = [s.stride for s in stages[:last + 1]]
        #: layer -> expansion module, for the expanded taps among ``layers`` (empty otherwise,
        #: so files of stride taps keep their state keys)
        self.expansions = nn.ModuleDict({layer: copy.deepcopy(expansions[t].module)
                                         for layer, t in taps.items() if t in expansions})
        self.channels: dict[str, int] = {k: (expansions[taps[k]].channels if k in self.expansions
                                             else stages[i].channels)
                                         for k, i in self._stage_of.items()}
        self.strides: dict[str, int] = {k: stages[i].stride for k, i in self._stage_of.items()}
        if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0 or any(
                pad % s for s in self.strides.values()):
            raise BackboneError(f"pad must be a non-negative whole number of pixels divisible "
                                f"by every tap's stride {sorted(set(self.strides.values()))}, "
                                f"got {pad!r}")
        self.pad = pad
        self.crop = bool(crop)
        renorm = (tuple(net.input_mean), tuple(net.input_std)) != (IMAGENET_MEAN, IMAGENET_STD)
        self.renorm = InputRenorm(net.input_mean, net.input_std) if renorm else nn.Identity()
        self.channels_last = channels_last
        if channels_last:
            self.stages.to(memory_format=torch.channels_last)
            self.expansions.to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Ignore ``mode``: the extractor always stays in eval mode (frozen statistics)."""
        return super().train(False)

    def _crop(self, t: torch.Tensor, stride: int) -> torch.Tensor:
        """A tap of the framed image cut back to the cells of the image itself."""
        c = self.pad // stride if self.crop else 0
        return t[..., c:t.shape[-2] - c, c:t.shape[-1] - c] if c else t

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps of ImageNet-normalised (N, 3, H, W) input, keyed by requested name."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FeatureExtractor expects (N, 3, H, W) input, got "
                             f"{tuple(x.shape)}")
        if self.pad:  # zero after ImageNet normalisation = the mean colour
            x = F.pad(x, (self.pad,) * 4)
        x = self.renorm(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outputs: dict[int, torch.Tensor] = {}
        for index, stage in enumerate(self.stages):
            x = stage(x)
            outputs[index] = x
        wanted = {self._stage_of[layer] for layer in self.layers}
        outputs = {i: self._crop(t, self._stage_stride[i])
                   for i, t in outputs.items() if i in wanted}
        # 1x1 expansions commute with the crop: expanding the cropped tap is cheaper
        return {layer: (self.expansions[layer](outputs[self._stage_of[layer]])
                        if layer in self.expansions else outputs[self._stage_of[layer]]
                        ).contiguous() for layer in self.layers}
