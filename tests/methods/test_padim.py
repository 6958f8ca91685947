"""PaDiM's head: per-location Gaussian statistics and Mahalanobis distances, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oddeye.methods.padim import Padim, diagonal_shrinkage, ledoit_wolf
from tests.methods.fakes import FeatureBatches


def test_padim_distance_is_the_per_location_mahalanobis_distance():
    g = torch.Generator().manual_seed(0)
    method = Padim(layers=["a", "b"], n_features=5, eps=0.01)
    head = method.build_head({"a": 4, "b": 3}, {"a": 4, "b": 8})
    train = [{"a": torch.randn(6, 4, 4, 4, generator=g), "b": torch.randn(6, 3, 2, 2, generator=g)}
             for _ in range(3)]
    method.fit_head(head, FeatureBatches(train))
    test = {"a": torch.randn(2, 4, 4, 4, generator=g), "b": torch.randn(2, 3, 2, 2, generator=g)}
    got = head(test).numpy()

    def embed(f):  # nearest upsampling of b to a's 4x4, concat, channel subset
        b = f["b"].repeat_interleave(2, 2).repeat_interleave(2, 3)
        return torch.cat([f["a"], b], 1)[:, head.index].double().numpy()

    x = np.concatenate([embed(f) for f in train])  # (18, 5, 4, 4)
    e = embed(test)
    for i, j in [(0, 0), (1, 3), (3, 2)]:
        s = x[:, :, i, j]
        cov = np.cov(s, rowvar=False) + 0.01 * np.eye(5)
        d = e[:, :, i, j] - s.mean(0)
        want = np.sqrt(np.einsum("nd,de,ne->n", d, np.linalg.inv(cov), d))
        np.testing.assert_allclose(got[:, i, j], want, rtol=1e-4)


def test_fitted_state_is_laid_out_as_a_loaded_file_is():
    # a reloaded model's buffers are contiguous; a fitted one with column-major inverses
    # (torch.linalg.inv's layout) summed its einsum in another order: scores 1 ulp apart
    g = torch.Generator().manual_seed(0)
    method = Padim(layers=["a"], n_features=4)
    head = method.build_head({"a": 4}, {"a": 4})
    method.fit_head(head, FeatureBatches([{"a": torch.randn(8, 4, 3, 3, generator=g)}]))
    assert head.inv_cov.is_contiguous() and head.mean.is_contiguous()
    again = method.head_from_state({"a": 4}, {"a": 4},
                                   {k: v.clone() for k, v in head.state_dict().items()})
    x = {"a": torch.randn(2, 4, 3, 3, generator=g)}
    assert torch.equal(head(x), again(x))


def test_ledoit_wolf_from_streaming_sums_matches_scikit_learn():
    from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 40, 6, generator=g, dtype=torch.float64)  # (L, n, d): 3 locations
    x[1] = x[1] * torch.linspace(0.1, 5, 6, dtype=torch.float64) + 3.0  # uneven scales, offset
    x[2, :, 1] = x[2, :, 0] * 2  # a rank-deficient location
    sq = (x * x).sum(-1, keepdim=True)
    shrunk, s = ledoit_wolf(x.sum(1), x.transpose(1, 2) @ x, (sq * sq).sum((1, 2)),
                            (sq * x).sum(1), 40)
    for loc in range(3):
        want, want_s = sk_ledoit_wolf(x[loc].numpy())
        np.testing.assert_allclose(shrunk[loc].numpy(), want, rtol=1e-9, atol=1e-12)
        assert abs(float(s[loc]) - want_s) < 1e-9
    assert 0 < float(s.min()) and float(s.max()) < 1


def _scores_against(covariance: str, batch: int, cov_of) -> tuple[list, dict, np.ndarray]:
    """Fit a 4-channel PaDiM with ``covariance`` on two random batches and check its scores at
    two locations against the Mahalanobis distance under ``cov_of(samples)`` (eps included);
    returns (train batches, test features, scores)."""
    g = torch.Generator().manual_seed(0)
    method = Padim(layers=["a"], n_features=4, eps=0.01, covariance=covariance)
    head = method.build_head({"a": 4}, {"a": 4})
    train = [{"a": torch.randn(batch, 4, 3, 3, generator=g)} for _ in range(2)]
    method.fit_head(head, FeatureBatches(train))
    test = {"a": torch.randn(2, 4, 3, 3, generator=g)}
    got = head(test).numpy()
    x = torch.cat([f["a"] for f in train]).double().numpy()
    for i, j in [(0, 0), (2, 1)]:
        s = x[:, :, i, j]
        d = test["a"][:, :, i, j].double().numpy() - s.mean(0)
        want = np.sqrt(np.einsum("nd,de,ne->n", d, np.linalg.inv(cov_of(s)), d))
        np.testing.assert_allclose(got[:, i, j], want, rtol=1e-4)
    return train, test, got


def test_ledoit_wolf_padim_scores_with_the_shrunk_covariance():
    from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

    train, test, got = _scores_against(
        "ledoit_wolf", 5, lambda s: sk_ledoit_wolf(s)[0] + 0.01 * np.eye(4))
    plain = Padim(layers=["a"], n_features=4, eps=0.01)
    plain_head = plain.build_head({"a": 4}, {"a": 4})
    plain.fit_head(plain_head, FeatureBatches(train))
    assert not np.allclose(plain_head(test).numpy(), got)  # the option changes the scores


def _diagonal_target_by_hand(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Schafer & Strimmer's target D, written from the paper's definitions with centred data."""
    n = x.shape[0]
    xc = x - x.mean(0)
    w = xc[:, :, None] * xc[:, None, :]  # (n, d, d) centred products
    cov = w.sum(0) / (n - 1)
    var = n / (n - 1) ** 3 * ((w - w.mean(0)) ** 2).sum(0)
    off = ~np.eye(x.shape[1], dtype=bool)
    lam = min(1.0, max(0.0, var[off].sum() / (cov[off] ** 2).sum()))
    return np.where(off, (1 - lam) * cov, cov), lam


def test_diagonal_shrinkage_from_streaming_sums_matches_the_centred_definition():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 30, 5, generator=g, dtype=torch.float64)  # (L, n, d)
    x[1] = x[1] * torch.linspace(0.1, 5, 5, dtype=torch.float64) + 3.0  # uneven scales, offset
    x[2, :, 1] = x[2, :, 0] * 2 + 0.1 * x[2, :, 1]  # two strongly correlated channels
    x2 = x * x
    shrunk, lam = diagonal_shrinkage(x.sum(1), x.transpose(1, 2) @ x, x2.transpose(1, 2) @ x2,
                                     x2.transpose(1, 2) @ x, 30)
    for loc in range(3):
        want, want_lam = _diagonal_target_by_hand(x[loc].numpy())
        np.testing.assert_allclose(shrunk[loc].numpy(), want, rtol=1e-8, atol=1e-10)
        assert abs(float(lam[loc]) - want_lam) < 1e-9
    # variances kept; the correlated location shrinks least, independent noise most
    np.testing.assert_allclose(torch.diagonal(shrunk, dim1=1, dim2=2).numpy(),
                               np.stack([np.var(x[k].numpy(), 0, ddof=1) for k in range(3)]))
    assert float(lam[2]) < float(lam[0]) and 0 < float(lam.min()) and float(lam.max()) <= 1


def test_diagonal_shrinkage_padim_scores_with_the_shrunk_covariance():
    _scores_against("diagonal_shrinkage", 6,
                    lambda s: _diagonal_target_by_hand(s)[0] + 0.01 * np.eye(4))


@pytest.mark.filterwarnings("ignore:too few good images")
def test_padim_files_from_before_the_covariance_option_load_as_the_sample_covariance(tmp_path):
    import oddeye
    from oddeye.api import Detector
    from tests.modelfiles import older_file

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    det = Detector(method="padim", size=64, holdout=0).fit(imgs, progress=False)
    old = oddeye.load(older_file(det.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.covariance"]))
    assert old.method_.covariance == "sample"
    np.testing.assert_array_equal(old.predict(imgs[:2]).scores, det.predict(imgs[:2]).scores)
