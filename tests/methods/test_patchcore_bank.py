"""PatchCore's memory-bank size: a share of the patches, capped by default, bad values refused."""

from __future__ import annotations

import pytest
import torch

from oddeye.errors import DataError
from oddeye.methods import create_method
from oddeye.methods.patchcore import bank_size
from tests.methods.fakes import FeatureBatches


def test_bank_size_is_the_ratio_capped_at_max_bank():
    assert bank_size(200_000, 0.1, None) == 20_000
    assert bank_size(200_000, 0.1, 10_000) == 10_000
    assert bank_size(5_000, 0.1, 10_000) == 500
    assert bank_size(3, 0.01, None) == 1
    assert create_method("patchcore").max_bank == 10_000  # the documented default


@pytest.mark.parametrize(("ratio", "cap", "word"), [
    (0.0, None, "coreset_ratio"), (1.5, None, "coreset_ratio"), (0.1, 0, "max_bank"),
    (0.1, -5, "max_bank"), (0.1, 2.5, "max_bank"), (0.1, True, "max_bank")])
def test_bad_bank_parameters_are_clear_errors(ratio, cap, word):
    with pytest.raises(DataError, match=word):
        bank_size(100, ratio, cap)


def test_fitted_bank_respects_the_cap():
    g = torch.Generator().manual_seed(0)
    feats = [{"a": torch.randn(4, 8, 8, 8, generator=g), "b": torch.randn(4, 8, 4, 4, generator=g)}
             for _ in range(2)]  # 8 images x 64 patches = 512 patches
    for cap, want in ((None, 51), (20, 20)):
        m = create_method("patchcore", layers=["a", "b"], max_bank=cap)
        head = m.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
        m.fit_head(head, FeatureBatches(feats))
        assert head.bank.shape == (want, 16)


def test_projected_distances_are_a_lower_bound_and_exact_for_the_full_basis():
    from oddeye.methods.patchcore import pca_basis, project_with_residual

    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 12, generator=g) * torch.linspace(3, 0.1, 12)  # decaying variances
    a, b = x[:250], x[250:]
    true = torch.cdist(a, b)
    for k in (2, 6):
        mean, basis = pca_basis(x, k)
        assert basis.shape == (12, k)
        assert torch.allclose(basis.T @ basis, torch.eye(k), atol=1e-5)  # orthonormal
        pa, pb = project_with_residual(a, mean, basis), project_with_residual(b, mean, basis)
        approx = torch.cdist(pa, pb)
        assert torch.all(approx <= true + 1e-4)
        # the residual coordinate keeps energy off the subspace: a point far along the least
        # varying axis stays far from the bulk although the first k coordinates ignore it
        odd = x[:1].clone()
        odd[0, -1] += 50.0
        d_odd = torch.cdist(project_with_residual(odd, mean, basis), pb).min()
        assert d_odd > 10.0
    mean, basis = pca_basis(x, 12)  # the full basis: nothing left out, distances exact
    pa, pb = project_with_residual(a, mean, basis), project_with_residual(b, mean, basis)
    assert torch.allclose(torch.cdist(pa, pb), true, atol=1e-3)


def test_search_dim_bank_lives_in_the_projected_space_and_round_trips():
    from oddeye.methods.base import resize_buffers

    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(3, 0.05, 8)[None, :, None, None]  # most variance in few channels

    def batch(n: int) -> dict[str, torch.Tensor]:
        return {"a": torch.randn(n, 8, 8, 8, generator=g) * scale,
                "b": torch.randn(n, 8, 4, 4, generator=g) * scale}

    feats = [batch(4) for _ in range(2)]
    # the whole training set as bank (ratio 1), so both heads search the same patches
    m = create_method("patchcore", layers=["a", "b"], search_dim=8, coreset_ratio=1.0)
    head = m.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
    m.fit_head(head, FeatureBatches(feats))
    assert head.bank.shape == (512, 9) and head.proj_basis.shape == (16, 8)
    exact = create_method("patchcore", layers=["a", "b"], coreset_ratio=1.0)
    ehead = exact.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
    exact.fit_head(ehead, FeatureBatches(feats))
    probe = batch(1)
    with torch.inference_mode():
        approx_map, exact_map = head.eval()(probe), ehead.eval()(probe)
    assert approx_map.shape == exact_map.shape == (1, 8, 8)
    assert torch.all(approx_map <= exact_map + 1e-4)  # a lower bound of the exact distance
    corr = torch.corrcoef(torch.stack([approx_map.flatten(), exact_map.flatten()]))[0, 1]
    assert corr > 0.8
    again = m.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
    resize_buffers(again, head.state_dict())
    again.load_state_dict(head.state_dict(), strict=True)
    with torch.inference_mode():
        assert torch.equal(again.eval()(probe), approx_map)


@pytest.mark.parametrize("bad", [0, 16, 2.5, True])
def test_bad_search_dim_is_a_clear_error(bad):
    feats = [{"a": torch.randn(2, 8, 4, 4), "b": torch.randn(2, 8, 2, 2)}]
    m = create_method("patchcore", layers=["a", "b"], search_dim=bad)
    head = m.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
    with pytest.raises(DataError, match="search_dim"):
        m.fit_head(head, FeatureBatches(feats))
