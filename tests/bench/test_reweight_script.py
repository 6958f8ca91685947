"""benchmarks/patchcore_reweight.py: the PatchCore paper's Eq. 7 factor, checked on a hand-made
bank, and its farthest patch is the one the fitted model scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.bench.scripts import load_script


@pytest.fixture()
def script():
    return load_script("patchcore_reweight")


def test_factor_is_one_minus_the_nearest_share_of_the_softmax(script):
    # m* = (0, 0); its 3 nearest bank patches: itself, (1, 0), (0, 2); (10, 10) is farther
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [10.0, 10.0]])
    m_test = torch.tensor([[0.0, -1.0]])
    s_new, factor = script.reweight(torch.tensor([1.0]), m_test, bank, b=3)
    d = [1.0, math.sqrt(2.0), 3.0]  # from m_test to m*, (1, 0), (0, 2)
    want = 1 - math.exp(d[0]) / sum(math.exp(x) for x in d)
    assert float(factor) == pytest.approx(want) and float(s_new) == pytest.approx(want)
    # a rare m* (its neighbours far away) keeps almost the whole score, a dense one loses 1/b
    far = torch.tensor([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0]])
    near = torch.tensor([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01]])
    assert float(script.reweight(torch.tensor([1.0]), m_test, far, b=3)[1]) > 0.999
    assert float(script.reweight(torch.tensor([1.0]), m_test, near, b=3)[1]) == pytest.approx(
        2 / 3, abs=0.01)


@pytest.mark.filterwarnings("ignore:too few good images")
def test_farthest_patch_distance_is_the_models_image_score(script):
    from oddeye.api import Detector

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    det = Detector(method="patchcore", size=64, holdout=0).fit(imgs[:4], progress=False)
    s_star, m_test = script.farthest_patches(det, imgs[4:])
    np.testing.assert_allclose(s_star.numpy(), det.predict(imgs[4:]).scores, rtol=1e-4)
    assert m_test.shape == (2, det.model_.head.bank.shape[1])
