"""Greedy k-center coreset selection (PatchCore's memory-bank reduction), projected and chunked.

The exact greedy loop reads the whole bank once per selected point, so it is memory-bound:
O(n_select * N * D) bytes. Two approximations keep it fast and are measured in docs/methods.md:
a Gaussian random projection to ``proj_dim`` dimensions (distances preserved up to a small
distortion, Johnson-Lindenstrauss), and chunking: the points are shuffled into chunks of at most
``chunk_size`` that fit in cache, and each chunk contributes its share of centres by its own greedy
loop. ``chunk_size=None`` runs the exact (projected) greedy loop over all points.
"""

from __future__ import annotations

import math

import torch


def random_projection(x: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """Project (N, D) features to (N, dim) with a seeded Gaussian matrix; identity if D <= dim."""
    if dim <= 0 or x.shape[1] <= dim:
        return x
    g = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same matrix on any device
    proj = torch.randn(x.shape[1], dim, generator=g, dtype=x.dtype) / math.sqrt(dim)
    return x @ proj.to(x.device)


def greedy_kcenter(x: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
    """Exact greedy k-center on (N, D): each step adds the point farthest from the chosen set."""
    num = x.shape[0]
    n = min(n, num)
    if n <= 0:
        return torch.empty(0, dtype=torch.long)
    sq = (x * x).sum(1)
    chosen = torch.empty(n, dtype=torch.long)
    idx = start
    min_d = torch.full((num,), float("inf"), dtype=x.dtype, device=x.device)
    for i in range(n):
        chosen[i] = idx
        d = sq - 2.0 * torch.mv(x, x[idx]) + sq[idx]
        torch.minimum(min_d, d, out=min_d)
        idx = int(torch.argmax(min_d))
    return chosen


#: Defaults shared by every bank built with this module (PatchCore's and anoonly-head's prior).
PROJ_DIM = 128
CHUNK_SIZE = 16384


def coreset_indices(features: torch.Tensor, n: int, proj_dim: int = PROJ_DIM,
                    chunk_size: int | None = CHUNK_SIZE, seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` coreset points of (N, D) ``features`` (sorted, unique)."""
    num = features.shape[0]
    if n >= num:
        return torch.arange(num)
    x = random_projection(features.float(), proj_dim, seed)
    g = torch.Generator().manual_seed(seed)
    if chunk_size is None or num <= chunk_size:
        start = int(torch.randint(num, (1,), generator=g))
        return greedy_kcenter(x, n, start).sort().values
    perm = torch.randperm(num, generator=g)
    n_chunks = math.ceil(num / chunk_size)
    bounds = [round(i * num / n_chunks) for i in range(n_chunks + 1)]
    # each chunk selects its share; shares sum exactly to n
    shares = [round(n * bounds[i + 1] / num) - round(n * bounds[i] / num) for i in range(n_chunks)]
    picked = []
    for i in range(n_chunks):
        part = perm[bounds[i]:bounds[i + 1]]
        if shares[i] > 0:
            local = greedy_kcenter(x[part].contiguous(), shares[i], 0)
            picked.append(part[local])
    return torch.cat(picked).sort().values
