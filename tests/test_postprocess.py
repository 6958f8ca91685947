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


def test_position_stats_and_standardize():
    from oddeye.postprocess import SCALE_FLOOR, position_stats, standardize

    g = torch.Generator().manual_seed(0)
    maps = torch.rand(12, 8, 8, generator=g) * torch.linspace(0.1, 2, 8)  # spread grows with x
    mean, scale = position_stats(maps)
    torch.testing.assert_close(mean, maps.mean(0))
    assert torch.all(scale >= SCALE_FLOOR * maps.std(0).mean() - 1e-6)
    assert scale[:, -1].mean() > 3 * scale[:, 0].mean()  # follows the spread, column by column
    torch.testing.assert_close(standardize(mean[None], mean, scale), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="at least 3"):
        position_stats(maps[:2])
    same = torch.ones(5, 4, 4)  # identical good maps: no spread anywhere
    z = standardize(same[:1] + 0.5, *position_stats(same))
    assert torch.isfinite(z).all() and (z > 0).all()


def test_leave_one_out_standardize_matches_refitting_without_each_map():
    from oddeye.postprocess import leave_one_out_standardize, position_stats, standardize

    g = torch.Generator().manual_seed(1)
    maps = torch.rand(7, 6, 5, generator=g) * 3 + 10  # an offset, as distances have
    fast = leave_one_out_standardize(maps)
    for i in range(7):
        others = torch.cat([maps[:i], maps[i + 1:]])
        want = standardize(maps[i:i + 1], *position_stats(others))
        torch.testing.assert_close(fast[i:i + 1], want, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="at least 4"):
        leave_one_out_standardize(maps[:3])


def test_standardized_scores_ignore_a_spot_every_good_map_has():
    """A bright spot on every good part (a highlight) sets the plain maximum, not the z-score."""
    from oddeye.postprocess import position_stats

    g = torch.Generator().manual_seed(2)

    def good(n: int) -> torch.Tensor:
        m = torch.rand(n, 16, 16, generator=g) * 0.2
        m[:, 7:9, 7:9] += 2.0 + torch.rand(n, 1, 1, generator=g)  # the highlight, varying
        return m

    defect = good(1)
    defect[0, 2:4, 12:14] += 1.5  # weaker than the highlight, but where good parts are quiet
    test = torch.cat([good(4), defect])
    plain = PostProcess(64, sigma=1.0, score_from="raw")
    normed = PostProcess(64, sigma=1.0, score_from="raw")
    normed.set_position_stats(*position_stats(good(20)))
    assert normed.standardizes and not plain.standardizes
    assert int(plain(test)[1].argmax()) != 4  # the highlight wins without standardisation
    maps, scores = normed(test)
    assert int(scores.argmax()) == 4 and maps.shape == (5, 64, 64)
    torch.testing.assert_close(normed(test)[1], normed.finish(
        (test - normed.norm_mean) / normed.norm_scale)[1])
    with pytest.raises(ValueError, match="equal"):
        normed.set_position_stats(torch.zeros(4, 4), torch.ones(4, 5))
