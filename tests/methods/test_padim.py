"""PaDiM's head: per-location Gaussian statistics and Mahalanobis distances, checked by hand."""

from __future__ import annotations

import numpy as np
import torch

from oddeye.methods.padim import Padim
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
