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


def test_chunks_do_not_cover_again_what_earlier_chunks_covered():
    # every point twice: chunks that ignored each other would pick both copies of a point
    y = torch.randn(600, 8, generator=torch.Generator().manual_seed(3))
    x = torch.cat([y, y])
    idx = coreset_indices(x, 200, proj_dim=0, chunk_size=300, sequential=True)
    assert torch.unique(x[idx], dim=0).shape[0] == 200
    alone = coreset_indices(x, 200, proj_dim=0, chunk_size=300)  # independent chunks do
    assert torch.unique(x[alone], dim=0).shape[0] < 200


def test_duplicate_points_never_give_duplicate_indices():
    # binarised images (deeppcb) give many identical patches; more centres than distinct points
    x = torch.zeros(5000, 4)
    x[:3, 0] = torch.tensor([1.0, 2.0, 3.0])
    for chunk, sequential in [(None, False), (1024, False), (1024, True)]:
        idx = coreset_indices(x, 50, proj_dim=0, chunk_size=chunk, sequential=sequential)
        assert idx.numel() == 50 and torch.equal(idx, idx.unique())
        assert {0, 1, 2} <= set(idx.tolist())


def test_sequential_chunks_keep_the_radius_near_the_exact_one():
    g = torch.Generator().manual_seed(4)
    centres = torch.randn(40, 16, generator=g) * 3
    x = centres[torch.randint(40, (6000,), generator=g)] + torch.randn(6000, 16, generator=g)

    def radius(idx):
        return float(torch.cdist(x, x[idx]).min(dim=1).values.max())

    exact = radius(coreset_indices(x, 120, proj_dim=0, chunk_size=None))
    alone = radius(coreset_indices(x, 120, proj_dim=0, chunk_size=1000))
    sequential = radius(coreset_indices(x, 120, proj_dim=0, chunk_size=1000, sequential=True))
    assert sequential < 1.25 * exact < alone


def test_tiled_nearest_centre_distances_match_cdist():
    from oddeye.methods.coreset import sq_dist_to_nearest

    g = torch.Generator().manual_seed(5)
    x, c = torch.randn(1000, 12, generator=g), torch.randn(333, 12, generator=g)
    want = torch.cdist(x, c).min(dim=1).values ** 2
    torch.testing.assert_close(sq_dist_to_nearest(x, c, rows=128, cols=50), want, rtol=1e-4,
                               atol=1e-4)
