"""PaDiM (Defard et al., ICPR 2021): a Gaussian per feature-map location, Mahalanobis distance.

Stages are upsampled (nearest) to the finest one and concatenated; a seeded random subset of
``n_features`` channels is kept; each location gets a mean and a regularised covariance
(``+ eps * I``) estimated in float64 from streaming sums, and the test score is the Mahalanobis
distance to that location's Gaussian.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oddeye.methods import register
from oddeye.methods.base import Method, TrainSet, check_layers, check_number


class PadimHead(nn.Module):
    """Features -> per-location Mahalanobis distance map at the first layer's resolution."""

    def __init__(self, layers: Sequence[str], n_total: int, n_features: int):
        super().__init__()
        self.layers = list(layers)
        self.register_buffer("index", torch.zeros(min(n_features, n_total), dtype=torch.long))
        self.register_buffer("mean", torch.zeros(0, 0))
        self.register_buffer("inv_cov", torch.zeros(0, 0, 0))

    def embed(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, d, h, w) selected channels of the concatenated stages."""
        size = feats[self.layers[0]].shape[-2:]
        parts = [feats[k] if feats[k].shape[-2:] == size else
                 F.interpolate(feats[k], size=size, mode="nearest") for k in self.layers]
        return torch.cat(parts, dim=1).index_select(1, self.index)

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embed(feats)
        n, d, h, w = emb.shape
        # (L, N, d), contiguous: a strided batch makes the per-location products ~3x slower
        delta = (emb.flatten(2).permute(2, 0, 1) - self.mean.unsqueeze(1)).contiguous()
        dist = torch.einsum("lnd,lde,lne->ln", delta, self.inv_cov, delta)
        return dist.clamp_min(0).sqrt().T.reshape(n, h, w)


@register
class Padim(Method):
    """PaDiM with a seeded random channel subset."""

    name = "padim"
    default_layers = ("s4", "s8", "s16")

    def __init__(self, backbone: str | None = None, layers: Sequence[str] | None = None,
                 n_features: int = 100, eps: float = 0.01, seed: int = 0):
        super().__init__(backbone, layers)
        self.n_features = n_features
        self.eps = eps
        self.seed = seed

    def check_params(self) -> None:
        """Types and ranges of the hyper-parameters (a ``DataError`` naming the first bad one),
        so a fit fails before any image is decoded."""
        check_number("n_features", self.n_features, low=1, integer=True)
        check_number("eps", self.eps, low=0)
        check_number("seed", self.seed, low=0, integer=True)

    def build_head(self, channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
        check_layers(self.layers, channels)
        self.check_params()
        total = sum(channels[k] for k in self.layers)
        head = PadimHead(self.layers, total, self.n_features)
        g = torch.Generator().manual_seed(self.seed)
        head.index = torch.randperm(total, generator=g)[: head.index.numel()].sort().values
        return head

    def fit_head(self, head: nn.Module, data: TrainSet) -> None:
        assert isinstance(head, PadimHead)
        s1 = s2 = None
        n = 0
        for feats in data.iter_features(desc="padim features"):
            e = head.embed(feats).double().flatten(2).permute(2, 0, 1)  # (L, B, d)
            b1 = e.sum(1)
            b2 = torch.bmm(e.transpose(1, 2), e)
            s1 = b1 if s1 is None else s1 + b1
            s2 = b2 if s2 is None else s2 + b2
            n += e.shape[1]
        if n < 2:
            from oddeye.errors import DataError

            raise DataError("PaDiM needs at least 2 training images to estimate covariances")
        mean = s1 / n
        cov = (s2 - n * mean.unsqueeze(2) * mean.unsqueeze(1)) / (n - 1)
        cov += self.eps * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        head.mean = mean.float()
        # contiguous, as a loaded file is: linalg.inv returns column-major matrices, and the
        # einsum then sums in another order (scores differed from the reloaded model by 1 ulp)
        try:
            inv = torch.linalg.inv(cov)
        except torch.linalg.LinAlgError:
            from oddeye.errors import DataError

            raise DataError(
                f"PaDiM: the covariance of some feature locations is singular ({n} training "
                f"images, eps={self.eps:g}): raise eps (default 0.01) or give more, varied "
                "images") from None
        head.inv_cov = inv.float().contiguous()
