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


def test_last_grid_averages_finer_stages_over_each_coarse_cell():
    """``grid="last"``: the embedding has the coarse tap's cells; a finer stage contributes the
    mean of its (already neighbourhood-averaged) cells inside each coarse cell, the coarse
    stage itself is unchanged; the default grid is still the finest tap's."""
    fine = torch.randn(2, 3, 8, 8)
    coarse = torch.randn(2, 5, 4, 4)
    feats = {"s8": fine, "s16": coarse}
    emb = aggregate(feats, ["s8", "s16"], 3, grid="last")
    assert emb.shape == (2, 8, 4, 4)
    pooled = aggregate({"s8": fine}, ["s8"], 3)
    blocks = pooled.unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2))
    torch.testing.assert_close(emb[:, :3], blocks)
    torch.testing.assert_close(emb[:, 3:], aggregate({"s16": coarse}, ["s16"], 3))
    assert aggregate(feats, ["s8", "s16"], 3).shape == (2, 8, 8, 8)
    assert aggregate(feats, ["s8", "s16"], 3, grid="s16").shape == emb.shape


def test_last_grid_takes_odd_sized_finer_taps():
    """A stride-2 stage of an odd-sized map has ceil(n / 2) cells: the last block is partial."""
    fine = torch.arange(25.0).reshape(1, 1, 5, 5)
    emb = aggregate({"a": fine, "b": torch.zeros(1, 1, 3, 3)}, ["a", "b"], 1, grid="b")
    assert emb.shape == (1, 2, 3, 3)
    assert emb[0, 0, 2, 2] == fine[0, 0, 4, 4]  # a 1 x 1 block at the corner
    assert emb[0, 0, 0, 0] == fine[0, 0, :2, :2].mean()


@pytest.mark.parametrize("value", ["s32", "middle", 1])
def test_grid_must_name_a_tap(value):
    with pytest.raises(DataError, match="grid must be 'first', 'last' or one of the layers"):
        create_method("patchcore", grid=value).build_head({"s8": 4, "s16": 4},
                                                          {"s8": 8, "s16": 16})


def test_cosine_patches_have_unit_stages_and_ignore_feature_magnitude():
    """``cosine``: each stage's vector at length 1/sqrt(stages), so the squared distance is the
    mean over stages of 2 - 2 cos, and scaling a stage's features changes nothing."""
    g = torch.Generator().manual_seed(0)
    feats = {"a": torch.randn(2, 4, 8, 8, generator=g), "b": torch.randn(2, 6, 4, 4, generator=g)}
    emb = aggregate(feats, ["a", "b"], 3, equal_layers=True, cosine=True)
    norms = torch.stack([emb[:, :4].norm(dim=1), emb[:, 4:].norm(dim=1)])
    torch.testing.assert_close(norms, torch.full_like(norms, 0.5 ** 0.5))
    scaled = aggregate({"a": feats["a"] * 7.0, "b": feats["b"] * 0.01}, ["a", "b"], 3,
                       cosine=True)
    torch.testing.assert_close(scaled, emb)
    p, q = emb[0, :, 2, 3], emb[1, :, 5, 1]
    cos = [torch.nn.functional.cosine_similarity(p[s], q[s], dim=0)
           for s in (slice(0, 4), slice(4, 10))]
    torch.testing.assert_close((p - q).square().sum(), sum(2 - 2 * c for c in cos) / 2)


def test_magnitude_adds_the_squared_log_length_ratio_to_the_cosine_distance():
    """``magnitude`` b: the squared distance is the mean over stages of
    ``2 - 2 cos + b^2 log(|q| / |p|)^2``; scaling a stage still changes nothing, while scaling
    one patch's features (not the other's) now does."""
    g = torch.Generator().manual_seed(1)
    feats = {"a": torch.rand(2, 4, 8, 8, generator=g), "b": torch.rand(2, 6, 4, 4, generator=g)}
    b = 1.5
    emb = aggregate(feats, ["a", "b"], 3, cosine=True, magnitude=b)
    assert emb.shape == (2, 4 + 1 + 6 + 1, 8, 8)
    plain = aggregate(feats, ["a", "b"], 3, cosine=True)
    torch.testing.assert_close(emb[:, [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]], plain)
    scaled = aggregate({"a": feats["a"] * 7.0, "b": feats["b"] * 0.01}, ["a", "b"], 3,
                       cosine=True, magnitude=b)
    torch.testing.assert_close(scaled[1:] - scaled[:1], emb[1:] - emb[:1])  # shifts only
    agg = aggregate(feats, ["a", "b"], 3)  # raw aggregated stages, for the lengths
    y, x = (2, 3), (5, 1)
    expected = 0.0
    for s in (slice(0, 4), slice(4, 10)):
        p, q = agg[0, s, y[0], y[1]], agg[1, s, x[0], x[1]]
        cos = torch.nn.functional.cosine_similarity(p, q, dim=0)
        expected = expected + (2 - 2 * cos + b * b * torch.log(p.norm() / q.norm()) ** 2) / 2
    got = (emb[0, :, y[0], y[1]] - emb[1, :, x[0], x[1]]).square().sum()
    torch.testing.assert_close(got, expected)
    zero = aggregate({"a": torch.zeros(1, 4, 3, 3)}, ["a"], 1, cosine=True, magnitude=b)
    assert torch.isfinite(zero).all()  # a zero vector: a floor on the length, no -inf


@pytest.mark.parametrize("params, message", [
    ({"magnitude": 1.0, "cosine": False}, "with cosine=False the lengths are compared already"),
    ({"magnitude": -1.0}, "magnitude must be"),
    ({"magnitude": "1"}, "magnitude must be"),
    ({"magnitude": float("nan")}, "magnitude must be"),
])
def test_bad_magnitude_is_refused(params, message):
    with pytest.raises(DataError, match=message):
        create_method("patchcore", **params).check_params()


@pytest.mark.parametrize("value", ["true", 0, None])
def test_cosine_must_be_a_bool(value):
    with pytest.raises(DataError, match="cosine must be true or false"):
        create_method("patchcore", cosine=value).build_head({"s8": 4, "s16": 4},
                                                            {"s8": 8, "s16": 16})


@pytest.mark.parametrize("method", ["patchcore", "anoonly-head"])
def test_unweighted_stages_under_cosine_are_refused_not_ignored(method):
    """``equal_layers=False`` cannot act once every stage is at unit length: a clear error
    instead of a model that silently ignores it; with ``cosine=False`` it is accepted."""
    with pytest.raises(DataError, match="equal_layers=False changes nothing with cosine=True"):
        create_method(method, equal_layers=False, cosine=True).check_params()
    create_method(method, equal_layers=False, cosine=False).check_params()
