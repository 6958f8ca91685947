"""PaDiM (Defard et al., ICPR 2021): a Gaussian per feature-map location, Mahalanobis distance.

Stages are upsampled (nearest) to the finest one and concatenated; a seeded random subset of
``n_features`` channels is kept; each location gets a mean and a regularised covariance
(``+ eps * I``) estimated in float64 from streaming sums, and the test score is the Mahalanobis
distance to that location's Gaussian. ``covariance="ledoit_wolf"`` shrinks each location's
covariance towards a scaled identity by the Ledoit-Wolf intensity first, and
``covariance="diagonal_shrinkage"`` shrinks only the covariances between channels (options:
with a hundred channels and a few hundred images the sample covariance is noisy).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oddeye.methods import register
from oddeye.methods.base import Method, TrainSet, check_choice, check_layers, check_number

#: How each location's covariance is estimated: ``sample`` (the paper's unbiased sample
#: covariance), ``ledoit_wolf`` (shrunk towards ``tr(S) / d * I`` by the Ledoit-Wolf intensity,
#: Ledoit & Wolf 2004, as scikit-learn's ``LedoitWolf`` computes it) or ``diagonal_shrinkage``
#: (covariances between channels shrunk towards 0, each channel's variance kept: Schafer &
#: Strimmer 2005, target D); ``eps * I`` is added to each.
COVARIANCES = ("sample", "ledoit_wolf", "diagonal_shrinkage")


def ledoit_wolf(s1: torch.Tensor, s2: torch.Tensor, s4: torch.Tensor, r: torch.Tensor,
                n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ledoit-Wolf shrunk covariances and their intensities from streaming sums over ``n``
    samples per location: ``s1 = sum x`` (L, d), ``s2 = sum x x^T`` (L, d, d), ``s4 = sum |x|^4``
    (L,) and ``r = sum |x|^2 x`` (L, d), all of uncentred ``x``. Returns ``((L, d, d), (L,))``:
    ``(1 - s) S + s mu I`` with ``S`` the maximum-likelihood covariance, ``mu = tr(S) / d``."""
    d = s1.shape[-1]
    mean = s1 / n
    scatter = s2 - n * mean.unsqueeze(2) * mean.unsqueeze(1)
    cov = scatter / n
    m2 = (mean * mean).sum(-1)  # |mean|^2
    quad = torch.einsum("ld,lde,le->l", mean, s2, mean)  # sum (x . mean)^2
    trace_s2 = torch.diagonal(s2, dim1=-2, dim2=-1).sum(-1)  # sum |x|^2
    # sum |x - mean|^4, expanded into the uncentred sums
    fourth = (s4 + 4 * quad - 3 * n * m2 * m2 - 4 * (r * mean).sum(-1) + 2 * m2 * trace_s2)
    mu = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1) / d
    frob = (cov * cov).sum((-2, -1))  # |S|_F^2
    beta = (fourth / n - frob) / (d * n)
    delta = (frob - d * mu * mu) / d
    beta = torch.minimum(beta, delta)
    shrink = torch.where(delta > 0, beta / delta.clamp_min(torch.finfo(delta.dtype).tiny),
                         torch.zeros_like(delta)).clamp(0, 1)
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    shrunk = (1 - shrink)[:, None, None] * cov + (shrink * mu)[:, None, None] * eye
    return shrunk, shrink


def diagonal_shrinkage(s1: torch.Tensor, s2: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                       n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Covariances shrunk towards their own diagonal and the intensities, from streaming sums
    over ``n`` samples per location of uncentred ``x``: ``s1 = sum x`` (L, d), ``s2 = sum x x^T``,
    ``a = sum x^2 (x^2)^T`` and ``b = sum x^2 x^T`` (L, d, d). Off-diagonal entries of the
    unbiased sample covariance ``S`` are scaled by ``1 - lambda``,
    ``lambda = sum_{i != j} Var(s_ij) / sum_{i != j} s_ij^2`` clamped to [0, 1], with
    ``Var(s_ij) = n / (n - 1)^3 sum_k (w_kij - mean_k w_kij)^2``, ``w_kij`` the centred products
    (Schafer & Strimmer 2005, target D)."""
    m = s1 / n  # (L, d)
    q = torch.diagonal(s2, dim1=-2, dim2=-1)  # sum x_i^2
    mi, mj = m.unsqueeze(2), m.unsqueeze(1)
    # sum_k (x_i - m_i)^2 (x_j - m_j)^2, expanded into the uncentred sums
    w2 = (a - 2 * mj * b - 2 * mi * b.transpose(1, 2) + mj * mj * q.unsqueeze(2)
          + mi * mi * q.unsqueeze(1) + 4 * mi * mj * s2 - 2 * mi * mj * mj * s1.unsqueeze(2)
          - 2 * mi * mi * mj * s1.unsqueeze(1) + n * mi * mi * mj * mj)
    scatter = s2 - n * mi * mj  # sum_k w_kij
    cov = scatter / (n - 1)
    var = n / (n - 1) ** 3 * (w2 - scatter * scatter / n).clamp_min(0)
    off = 1 - torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    num, den = (var * off).sum((-2, -1)), (cov * cov * off).sum((-2, -1))
    lam = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny),
                      torch.zeros_like(den)).clamp(0, 1)
    return cov * (1 - lam[:, None, None] * off), lam


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
        # a batched matmul, not einsum: ONNX Runtime's Einsum re-lays out the (L, d, d) inverse
        # covariances on every call (37 vs 6.5 ms per image at batch 1, docs/export.md)
        dist = (torch.bmm(delta, self.inv_cov) * delta).sum(-1)
        return dist.clamp_min(0).sqrt().T.reshape(n, h, w)


@register
class Padim(Method):
    """PaDiM with a seeded random channel subset.

    ``covariance``: ``sample`` (default, the paper's), ``ledoit_wolf`` (each location's
    covariance shrunk towards a scaled identity first; an option that lost on validation
    data, docs/methods.md "PaDiM") or ``diagonal_shrinkage`` (only the covariances between
    channels shrunk, each channel's own variance kept; an option that tied on validation
    data)."""

    name = "padim"
    default_layers = ("s4", "s8", "s16")
    legacy_defaults = {"covariance": "sample"}  # files from before the option
    fusable = True  # backbone="a+b": one head per backbone, maps fused (oddeye.methods.fusion)

    def __init__(self, backbone: str | None = None, layers: Sequence[str] | None = None,
                 n_features: int = 100, eps: float = 0.01, covariance: str = "sample",
                 seed: int = 0):
        super().__init__(backbone, layers)
        self.n_features = n_features
        self.eps = eps
        self.covariance = covariance
        self.seed = seed

    def check_params(self) -> None:
        """Types and ranges of the hyper-parameters (a ``DataError`` naming the first bad one),
        so a fit fails before any image is decoded."""
        check_number("n_features", self.n_features, low=1, integer=True)
        check_number("eps", self.eps, low=0)
        check_choice("covariance", self.covariance, COVARIANCES)
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
        shrink = self.covariance == "ledoit_wolf"
        diag = self.covariance == "diagonal_shrinkage"
        s1 = s2 = s4 = r = None
        n = 0
        for feats in data.iter_features(desc="padim features"):
            e = head.embed(feats).double().flatten(2).permute(2, 0, 1)  # (L, B, d)
            b1 = e.sum(1)
            b2 = torch.bmm(e.transpose(1, 2), e)
            s1 = b1 if s1 is None else s1 + b1
            s2 = b2 if s2 is None else s2 + b2
            if shrink:  # the fourth moments Ledoit-Wolf's intensity needs
                sq = (e * e).sum(-1, keepdim=True)  # (L, B, 1)
                b4, br = (sq * sq).sum((1, 2)), (sq * e).sum(1)
                s4 = b4 if s4 is None else s4 + b4
                r = br if r is None else r + br
            if diag:  # the fourth moments of each channel pair the intensity needs
                e2 = e * e
                b4, br = torch.bmm(e2.transpose(1, 2), e2), torch.bmm(e2.transpose(1, 2), e)
                s4 = b4 if s4 is None else s4 + b4
                r = br if r is None else r + br
            n += e.shape[1]
        if n < 2:
            from oddeye.errors import DataError

            raise DataError("PaDiM needs at least 2 training images to estimate covariances")
        mean = s1 / n
        if shrink:
            cov, intensity = ledoit_wolf(s1, s2, s4, r, n)
            head.shrinkage = intensity.float()  # kept for inspection, not saved
        elif diag:  # a slice of locations at a time: the expansion's temporaries stay small
            parts = [diagonal_shrinkage(s1[i:i + 256], s2[i:i + 256], s4[i:i + 256],
                                        r[i:i + 256], n) for i in range(0, s1.shape[0], 256)]
            cov = torch.cat([c for c, _ in parts])
            head.shrinkage = torch.cat([x for _, x in parts]).float()
            del parts, s4, r
        else:
            cov = (s2 - n * mean.unsqueeze(2) * mean.unsqueeze(1)) / (n - 1)
        cov += self.eps * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        head.mean = mean.float()
        # contiguous, as a loaded file is: linalg.inv returns column-major matrices, and the
        # distance's matmul then sums in another order (scores differed from a reload by 1 ulp)
        try:
            inv = torch.linalg.inv(cov)
        except torch.linalg.LinAlgError:
            from oddeye.errors import DataError

            raise DataError(
                f"PaDiM: the covariance of some feature locations is singular ({n} training "
                f"images, eps={self.eps:g}): raise eps (default 0.01) or give more, varied "
                "images") from None
        head.inv_cov = inv.float().contiguous()
