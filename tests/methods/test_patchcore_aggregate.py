"""PatchCore's neighbourhood aggregation: border cells with or without the zero padding."""

from __future__ import annotations

import pytest
import torch

from oddeye.errors import DataError
from oddeye.methods import create_method
from oddeye.methods.patchcore import aggregate, cut_frame


def test_border_cells_average_their_neighbours_or_count_the_zero_padding():
    f = torch.arange(16.0).reshape(1, 1, 4, 4) + 1
    plain = aggregate({"a": f}, ["a"], 3)
    zeros = aggregate({"a": f}, ["a"], 3, pool_zeros=True)
    corner = f[0, 0, :2, :2]
    assert torch.isclose(plain[0, 0, 0, 0], corner.mean())  # 4 in-map cells
    assert torch.isclose(zeros[0, 0, 0, 0], corner.sum() / 9)  # 5 padding zeros counted
    edge = f[0, 0, :2, :3]
    assert torch.isclose(zeros[0, 0, 0, 1], edge.sum() / 9)
    # interior cells see no padding: both agree there
    torch.testing.assert_close(plain[..., 1:-1, 1:-1], zeros[..., 1:-1, 1:-1])


def test_cut_frame_keeps_the_inner_cells():
    emb = torch.arange(36.0).reshape(1, 1, 6, 6)
    torch.testing.assert_close(cut_frame(emb, 2), emb[..., 2:4, 2:4])
    assert cut_frame(emb, 0) is emb


@pytest.mark.parametrize("value", ["false", 1, None])
def test_pool_zeros_must_be_a_bool(value):
    """A string such as "false" would otherwise count as True."""
    with pytest.raises(DataError, match="pool_zeros must be true or false"):
        create_method("patchcore", pool_zeros=value).build_head({"s8": 4, "s16": 4},
                                                                {"s8": 8, "s16": 16})
