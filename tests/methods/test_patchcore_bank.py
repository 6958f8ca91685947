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
