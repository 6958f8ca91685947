"""Conditional normalising flows on feature vectors, in plain torch (no flow library).

A flow maps a feature ``x`` (D values, the last axis of any shape) and a condition ``c`` (a
positional encoding, broadcast against x's leading axes) to ``z`` with a tractable Jacobian; the
density is ``log p(x | c) = log N(z; 0, I) + log|det dz/dx|``. Blocks: ``ActNorm`` (per-dimension
affine, identity until fitted), ``AffineCoupling`` (half the dims scaled and shifted by an MLP of
the other half and the condition, last layer zero so a fresh block is the identity) and fixed
channel permutations between couplings. Used by ResAD's distribution estimator; every block also
has an exact inverse so the algebra is testable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_logprob(z: torch.Tensor) -> torch.Tensor:
    """Log-density of (..., D) points under N(0, I): -0.5 * (|z|^2 + D log 2 pi), shape (...)."""
    return -0.5 * ((z * z).sum(dim=-1) + z.shape[-1] * LOG_2PI)


def position_encoding(dim: int, height: int, width: int) -> torch.Tensor:
    """2-D sine/cosine encoding (dim, H, W): half of the channels encode x, half encode y."""
    if dim <= 0 or dim % 4:
        raise ValueError(f"position encoding dim must be a positive multiple of 4, got {dim}")
    quarter = dim // 4
    freq = torch.exp(-math.log(1e4) * torch.arange(quarter, dtype=torch.float32) / quarter)
    xs = torch.arange(width, dtype=torch.float32)[:, None] * freq[None, :]  # (W, q)
    ys = torch.arange(height, dtype=torch.float32)[:, None] * freq[None, :]  # (H, q)
    enc_x = torch.cat([xs.sin(), xs.cos()], dim=1).T[:, None, :].expand(2 * quarter, height, width)
    enc_y = torch.cat([ys.sin(), ys.cos()], dim=1).T[:, :, None].expand(2 * quarter, height, width)
    return torch.cat([enc_x, enc_y], dim=0).contiguous()


class ActNorm(nn.Module):
    """y = (x + bias) * exp(log_scale) per dimension; the identity until ``init_from`` is called."""

    def __init__(self, dim: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    @torch.no_grad()
    def init_from(self, x: torch.Tensor, eps: float = 1e-6) -> None:
        """Data-dependent initialisation: the output of ``x`` gets zero mean and unit variance.
        A dimension that is constant in ``x`` (std below ``eps``) keeps scale 1: dividing by
        ``std + eps`` would multiply it by up to 1e6 for every later input."""
        std = x.std(dim=0)
        self.bias.copy_(-x.mean(dim=0))
        self.log_scale.copy_(torch.where(std < eps, torch.zeros_like(std),
                                         -torch.log(std + eps)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = (x + self.bias) * torch.exp(self.log_scale)
        return y, self.log_scale.sum().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class AffineCoupling(nn.Module):
    """Scale-and-shift the second part of x by a one-hidden-layer MLP of the first part and the
    condition.

    The log-scales are soft-clamped to (-clamp, clamp) (``clamp * tanh(s / clamp)``) for stable
    training; the MLP's last layer starts at zero, so an untrained block is exactly the identity.
    """

    def __init__(self, dim: int, cond_dim: int, hidden: int, clamp: float = 2.0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling layer needs dim >= 2, got {dim}")
        self.d1 = dim // 2
        self.d2 = dim - self.d1
        self.clamp = float(clamp)
        self.net = nn.Sequential(
            nn.Linear(self.d1 + cond_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * self.d2))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, x1: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        first = self.net[0]
        if cond is None:
            hidden = first(x1)
        else:
            # the first layer on [x1, cond] as two products, so cond (e.g. one row per position)
            # broadcasts over x1's leading axes (e.g. images) and is multiplied only once
            hidden = (F.linear(x1, first.weight[:, : self.d1], first.bias)
                      + F.linear(cond, first.weight[:, self.d1 :]))
        s, t = self.net[2](self.net[1](hidden)).chunk(2, dim=-1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = x[..., : self.d1], x[..., self.d1 :]
        s, t = self._scale_shift(x1, cond)
        return torch.cat([x1, x2 * torch.exp(s) + t], dim=-1), s.sum(dim=-1)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        y1, y2 = y[..., : self.d1], y[..., self.d1 :]
        s, t = self._scale_shift(y1, cond)
        return torch.cat([y1, (y2 - t) * torch.exp(-s)], dim=-1)


class ConditionalFlow(nn.Module):
    """ActNorm then ``n_coupling`` conditional affine couplings with fixed permutations between.

    ``forward(x, cond) -> (z, log_det)``; ``log_prob(x, cond)`` is the exact log-density. The
    permutations are seeded and stored as buffers, so a rebuilt flow loads the same network.
    """

    def __init__(self, dim: int, cond_dim: int = 0, n_coupling: int = 8,
                 hidden: int | None = None, clamp: float = 2.0, seed: int = 0):
        super().__init__()
        self.dim, self.cond_dim = int(dim), int(cond_dim)
        hidden = hidden or max(64, 2 * dim)
        self.actnorm = ActNorm(dim)
        self.couplings = nn.ModuleList(AffineCoupling(dim, cond_dim, hidden, clamp)
                                       for _ in range(n_coupling))
        g = torch.Generator().manual_seed(seed)
        perms = torch.stack([torch.randperm(dim, generator=g) for _ in range(n_coupling)])
        self.register_buffer("perms", perms)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        z, log_det = self.actnorm(x)
        for i, block in enumerate(self.couplings):
            z = z[..., self.perms[i]]
            z, ld = block(z, cond)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x from z (exact inverse of ``forward``), e.g. for sampling and tests."""
        x = z
        for i in reversed(range(len(self.couplings))):
            x = self.couplings[i].inverse(x, cond)
            x = x[..., torch.argsort(self.perms[i])]
        return self.actnorm.inverse(x)

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | cond) of every vector along the last axis: shape ``x.shape[:-1]``."""
        z, log_det = self(x, cond)
        return standard_normal_logprob(z) + log_det
