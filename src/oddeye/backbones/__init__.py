"""Pretrained CNN backbones (no torchvision/timm), weight files offline, taps by stride, BN folding.

    from oddeye.backbones import FeatureExtractor
    fx = FeatureExtractor("mobilenet_v2", ["s8", "s16"])     # frozen, eval, BatchNorm folded
    feats = fx(x)                                            # {"s8": (N,32,H/8,W/8), ...}
"""

from __future__ import annotations

from . import efficientnet, mobilenet, resnet  # noqa: F401  (register the families)
from .base import IMAGENET_MEAN, IMAGENET_STD, STRIDE_TAPS, Backbone, Expansion, Stage
from .features import DEFAULT_BATCH, FeatureExtractor, feature_info
from .fold import count_batchnorm, fold_batchnorm
from .registry import BackboneError, available_backbones, create_backbone
from .weights import (
    WEIGHT_FILES,
    WeightsFileError,
    download_weights,
    load_weights,
    resolve_weights,
)

__all__ = [
    "DEFAULT_BATCH",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "STRIDE_TAPS",
    "WEIGHT_FILES",
    "Backbone",
    "BackboneError",
    "Expansion",
    "FeatureExtractor",
    "Stage",
    "WeightsFileError",
    "available_backbones",
    "count_batchnorm",
    "create_backbone",
    "download_weights",
    "feature_info",
    "fold_batchnorm",
    "load_weights",
    "resolve_weights",
]
