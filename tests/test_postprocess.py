"""Map post-processing: Gaussian blur against scipy, upsampling, image scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from oddeye.postprocess import PostProcess, gaussian_blur, image_score, upsample


@pytest.mark.parametrize("sigma", [1.0, 2.5, 4.0])
def test_gaussian_blur_matches_scipy_reflect(sigma):
    rng = np.random.default_rng(0)
    m = rng.random((2, 64, 48)).astype(np.float32)
    ours = gaussian_blur(torch.from_numpy(m), sigma).numpy()
    # scipy's 'mirror' mode is torch's 'reflect' (edge pixel not repeated)
    ref = np.stack([ndimage.gaussian_filter(x, sigma, mode="mirror", truncate=4.0) for x in m])
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_blur_preserves_constant_and_zero_sigma_is_identity():
    m = torch.full((1, 20, 20), 3.0)
    torch.testing.assert_close(gaussian_blur(m, 4.0), m)
    r = torch.rand(1, 10, 10)
    assert gaussian_blur(r, 0) is r


def test_upsample_and_scores():
    m = torch.arange(16.0).view(1, 4, 4)
    up = upsample(m, (8, 8))
    assert up.shape == (1, 8, 8) and up.max() <= 15 and up.min() >= 0
    flat = torch.tensor([[1.0, 5.0, 3.0, 2.0]]).view(1, 2, 2)
    assert image_score(flat, "max").item() == 5.0
    assert image_score(flat, "topk", k=2).item() == 4.0
    with pytest.raises(ValueError):
        image_score(flat, "median")


def test_postprocess_score_is_max_of_smoothed_map():
    raw = torch.rand(3, 16, 16)
    maps, scores = PostProcess(64, sigma=4)(raw)
    assert maps.shape == (3, 64, 64)
    torch.testing.assert_close(scores, maps.flatten(1).amax(1))


def test_postprocess_raw_score_source_is_max_patch_score():
    raw = torch.rand(2, 8, 8)
    raw[0, 3, 3] = 10.0  # a single-patch spike: blurred away in the smoothed map, kept in raw
    maps, scores = PostProcess(32, sigma=4, score_from="raw")(raw)
    torch.testing.assert_close(scores, raw.flatten(1).amax(1))
    assert scores[0] > maps[0].max()
    with pytest.raises(ValueError, match="score_from"):
        PostProcess(32, score_from="median")
