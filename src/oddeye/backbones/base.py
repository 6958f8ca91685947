"""Common base of oddeye's backbones: input normalisation, feature stages, BN-fold pairs."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Canonical tap names, shallow to deep; each is the last block at that output stride.
STRIDE_TAPS: tuple[str, ...] = ("s2", "s4", "s8", "s16", "s32")


@dataclass(frozen=True)
class Stage:
    """One consecutive slice of a backbone whose output is the tap ``name``."""

    name: str
    module: nn.Module
    channels: int
    stride: int


@dataclass(frozen=True)
class Expansion:
    """Tap ``name`` (``<base>x``): stride tap ``base`` through the next block's expansion (1x1
    conv, BatchNorm, activation), the wide post-activation features an inverted-residual network
    computes from its narrow linear-bottleneck output."""

    name: str
    base: str
    module: nn.Module
    channels: int


class Backbone(nn.Module):
    """A classifier network that can also be cut into consecutive feature stages.

    ``input_mean``/``input_std`` (0..1 scale, RGB) are the normalisation the pretrained weights
    expect; ``bn_pairs`` lists (conv attribute, batch-norm attribute) pairs of this module that
    run back to back, for :func:`oddeye.backbones.fold_batchnorm`.
    """

    input_mean: tuple[float, float, float] = IMAGENET_MEAN
    input_std: tuple[float, float, float] = IMAGENET_STD
    bn_pairs: tuple[tuple[str, str], ...] = ()
    #: Extra accepted tap names mapped to a canonical one (e.g. ResNet ``layer1`` -> ``s4``).
    tap_aliases: dict[str, str] = {}

    def feature_stages(self) -> list[Stage]:
        """The network up to its last feature block as consecutive stages, one per stride tap."""
        raise NotImplementedError

    def expansions(self) -> list[Expansion]:
        """Expanded taps (inverted-residual networks only; none by default), built from the
        network's current layers: take them after any BatchNorm folding, which replaces BN
        layers (``FeatureExtractor`` does, and copies them)."""
        return []
