"""The shared nearest-neighbour search: bounded blocks, and exact distances near zero."""

from __future__ import annotations

import pytest
import torch

from oddeye.methods.neighbours import (
    blockwise_sq_distance,
    exact_sq_distance,
    nearest_sq_distance,
)


@pytest.mark.parametrize("search", ["chunked", "blockwise"])
def test_bank_rows_are_at_distance_zero_and_others_match_brute_force(search):
    """A query equal to a bank row (a training patch scored against its own bank) is at
    distance 0: the expanded form ``|q|^2 + |b|^2 - 2 q.b`` left ~1e-3 of the vectors' length
    after ``sqrt`` in float32, which made ``export --check`` on training images fail."""
    g = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(3000, 130, generator=g), dim=1) * 3
    queries = torch.cat([bank[[5, 1234, 2999]], torch.randn(40, 130, generator=g)])
    sq = (bank * bank).sum(1)
    if search == "chunked":
        got = nearest_sq_distance(queries, bank, sq, max_elems=20_000)  # many chunks
    else:
        got = blockwise_sq_distance(queries, bank, sq, block_rows=700)
    assert torch.equal(got[:3], torch.zeros(3))
    want = torch.cdist(queries.double(), bank.double()).min(1).values.square()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


def test_exact_sq_distance_is_the_squared_difference():
    a, b = torch.tensor([[1.0, 2.0], [0.5, 0.5]]), torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    torch.testing.assert_close(exact_sq_distance(a, b), torch.tensor([4.0, 0.0]))
