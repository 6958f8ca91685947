"""Anomaly-map post-processing shared by all methods: optional per-position standardisation,
upsample, Gaussian blur, image score.

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


#: How ``image_score`` reduces a map to a score (the Detector's ``score``).
SCORE_REDUCTIONS = ("max", "topk")


def image_score(maps: torch.Tensor, reduce: str = "max", k: int = 10) -> torch.Tensor:
    """Image score from (N, H, W) maps: the maximum, or the mean of the top-k pixels."""
    flat = maps.flatten(1)
    if reduce == "max":
        return flat.amax(dim=1)
    if reduce == "topk":
        return flat.topk(min(k, flat.shape[1]), dim=1).values.mean(dim=1)
    raise ValueError(f"reduce must be one of {SCORE_REDUCTIONS}, got {reduce!r}")


#: Floor of the per-position scale, as a share of its mean: a position that never varied on the
#: good images (flat background) must not turn tiny differences into huge z-values.
SCALE_FLOOR = 0.1


def _scale(std: torch.Tensor) -> torch.Tensor:
    """(M, h, w) per-position standard deviations -> the divisor: smoothed (sigma 1) plus floor."""
    floor = SCALE_FLOOR * std.mean(dim=(1, 2), keepdim=True)
    # identical good maps (zero spread everywhere) still give a finite, if huge, z-value
    return (gaussian_blur(std, 1.0) + floor).clamp_min(1e-8)


def position_stats(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (h, w), scale (h, w)) of (N, h, w) raw maps of good images, N >= 3.

    ``standardize`` with these turns a map into per-position z-values: a spot that is always
    high on good parts (a specular highlight, an image border) stops setting the image score.
    """
    if maps.shape[0] < 3:
        raise ValueError(f"position statistics need at least 3 maps, got {maps.shape[0]}")
    m = maps.double()
    return m.mean(0).float(), _scale(m.std(0)[None].float())[0]


def standardize(maps: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(N, h, w) maps -> per-position z-values with the stats of ``position_stats``."""
    return (maps - mean) / scale


def leave_one_out_standardize(maps: torch.Tensor) -> torch.Tensor:
    """Standardise each of N maps with the stats of the other N - 1 (N >= 4), in closed form.

    The images the stats come from would otherwise score low by construction; their
    out-of-sample z-maps give an unbiased threshold without holding out yet more images.
    """
    n = maps.shape[0]
    if n < 4:
        raise ValueError(f"leave-one-out statistics need at least 4 maps, got {n}")
    m = maps.double()
    s1, s2 = m.sum(0), (m * m).sum(0)
    mean = (s1 - m) / (n - 1)
    var = (s2 - m * m - (n - 1) * mean * mean) / (n - 2)
    std = var.clamp_min(0).sqrt().float()
    return (maps - mean.float()) / _scale(std)


SCORE_SOURCES = ("smoothed", "raw")


class PostProcess(nn.Module):
    """Raw map (N, h, w) -> (smoothed map (N, S, S), image score (N,)) at the model input size.

    ``score_from`` says which map the image score reduces: the smoothed full-size map (PaDiM's and
    RD4AD's papers) or the raw feature-resolution map (PatchCore's paper: max patch score). With
    position statistics set (``set_position_stats``), raw maps are standardised first.
    """

    def __init__(self, size: int, sigma: float = 4.0, reduce: str = "max", k: int = 10,
                 score_from: str = "smoothed"):
        super().__init__()
        self.size, self.sigma, self.reduce, self.k = int(size), float(sigma), reduce, int(k)
        if not math.isfinite(self.sigma) or self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if reduce not in SCORE_REDUCTIONS:  # fail when built, not at the first image scored
            raise ValueError(f"reduce must be one of {SCORE_REDUCTIONS}, got {reduce!r}")
        if score_from not in SCORE_SOURCES:
            raise ValueError(f"score_from must be one of {SCORE_SOURCES}, got {score_from!r}")
        self.score_from = score_from
        # per-position statistics of good raw maps (empty = no standardisation)
        self.register_buffer("norm_mean", torch.zeros(0, 0))
        self.register_buffer("norm_scale", torch.zeros(0, 0))

    @property
    def standardizes(self) -> bool:
        return self.norm_mean.numel() > 0

    def set_position_stats(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        if mean.shape != scale.shape or mean.dim() != 2:
            raise ValueError(f"mean and scale must be equal (h, w) maps, got {tuple(mean.shape)} "
                             f"and {tuple(scale.shape)}")
        self.norm_mean, self.norm_scale = mean.contiguous(), scale.contiguous()

    def finish(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Upsample, blur and score maps that are already standardised (or need not be)."""
        maps = gaussian_blur(upsample(raw, (self.size, self.size)), self.sigma)
        source = raw if self.score_from == "raw" else maps
        return maps, image_score(source, self.reduce, self.k)

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.standardizes:
            raw = standardize(raw, self.norm_mean, self.norm_scale)
        return self.finish(raw)
