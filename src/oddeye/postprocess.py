"""Anomaly-map post-processing shared by all methods: upsample, Gaussian blur, image score.

Written in plain torch ops so the same code runs in eager mode and inside an exported graph.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian with radius 4*sigma (truncated like scipy's default)."""
    radius = max(1, int(4.0 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of (N, h, w) maps to (N, H, W)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


def gaussian_blur(maps: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """Separable Gaussian smoothing of (N, H, W) maps, reflect padding; sigma <= 0 is a no-op."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel1d(sigma).to(maps)
    r = (k.numel() - 1) // 2
    x = maps.unsqueeze(1)
    x = F.pad(x, (r, r, 0, 0), mode="reflect" if r < x.shape[-1] else "replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, r, r), mode="reflect" if r < x.shape[-2] else "replicate")
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x[:, 0]


def image_score(maps: torch.Tensor, reduce: str = "max", k: int = 10) -> torch.Tensor:
    """Image score from (N, H, W) maps: the maximum, or the mean of the top-k pixels."""
    flat = maps.flatten(1)
    if reduce == "max":
        return flat.amax(dim=1)
    if reduce == "topk":
        return flat.topk(min(k, flat.shape[1]), dim=1).values.mean(dim=1)
    raise ValueError(f"reduce must be 'max' or 'topk', got {reduce!r}")


SCORE_SOURCES = ("smoothed", "raw")


class PostProcess(nn.Module):
    """Raw map (N, h, w) -> (smoothed map (N, S, S), image score (N,)) at the model input size.

    ``score_from`` says which map the image score reduces: the smoothed full-size map (PaDiM's and
    RD4AD's papers) or the raw feature-resolution map (PatchCore's paper: max patch score).
    """

    def __init__(self, size: int, sigma: float = 4.0, reduce: str = "max", k: int = 10,
                 score_from: str = "smoothed"):
        super().__init__()
        self.size, self.sigma, self.reduce, self.k = int(size), float(sigma), reduce, int(k)
        if not math.isfinite(self.sigma) or self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if score_from not in SCORE_SOURCES:
            raise ValueError(f"score_from must be one of {SCORE_SOURCES}, got {score_from!r}")
        self.score_from = score_from

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = gaussian_blur(upsample(raw, (self.size, self.size)), self.sigma)
        source = raw if self.score_from == "raw" else maps
        return maps, image_score(source, self.reduce, self.k)
