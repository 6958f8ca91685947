"""Greedy coreset: exact k-center against a brute-force loop, chunking and projection behaviour."""

from __future__ import annotations

import torch

from oddeye.methods.coreset import coreset_indices, greedy_kcenter, random_projection


def brute_kcenter(x: torch.Tensor, n: int, start: int) -> list[int]:
    chosen = [start]
    while len(chosen) < n:
        d = torch.cdist(x, x[chosen]).min(dim=1).values
        chosen.append(int(torch.argmax(d)))
    return chosen


def test_greedy_matches_brute_force():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert greedy_kcenter(x, 25, start=7).tolist() == brute_kcenter(x, 25, 7)


def test_coreset_covers_better_than_random():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(2000, 16, generator=g), torch.randn(20, 16, generator=g) + 8])
    idx = coreset_indices(x, 50, proj_dim=0, chunk_size=None)
    rnd = torch.randperm(x.shape[0], generator=g)[:50]
    radius = lambda i: torch.cdist(x, x[i]).min(dim=1).values.max()  # noqa: E731
    assert radius(idx) < radius(rnd)
    assert (idx >= 2000).any()  # the small far cluster is represented


def test_chunked_selection_returns_exact_count_unique_sorted():
    x = torch.randn(10_001, 32, generator=torch.Generator().manual_seed(2))
    for n, chunk in [(1000, 2048), (37, 999), (10_001, 4096), (5, 16384)]:
        idx = coreset_indices(x, n, proj_dim=16, chunk_size=chunk)
        assert idx.numel() == min(n, 10_001)
        assert torch.equal(idx, idx.unique())  # unique() sorts


def test_random_projection_is_seeded_and_keeps_small_inputs():
    x = torch.randn(50, 300)
    assert torch.equal(random_projection(x, 64, seed=3), random_projection(x, 64, seed=3))
    assert random_projection(x, 64).shape == (50, 64)
    assert random_projection(x, 512) is x
