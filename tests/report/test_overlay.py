"""The heatmap overlay: colours by normalised score (the threshold is the same colour on every
image), weak evidence nearly transparent, the predicted region outlined; tabulated and banded
so a camera-sized image costs little, within a level of the exact float blend."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from oddeye.report.overlay import CHUNK_ROWS, colormap, normalized_map, outline, overlay

MAGENTA = (255, 0, 255)


def exact_overlay(image, amap, threshold, scale, alpha=0.45):
    """The blend in float64 without tables or bands (what the overlay approximates)."""
    norm = normalized_map(amap, threshold, scale)
    heat = colormap(norm).astype(np.float64)
    a = (alpha * np.clip(norm * 1.6, 0.15, 1.0))[..., None]
    return image.astype(np.float64) * (1 - a) + heat * a


def scene(h=300, w=200, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    amap = np.exp(-((yy - h / 3) ** 2 + (xx - w / 2) ** 2) / (2 * 20.0 ** 2)).astype(np.float32)
    return image, amap


@pytest.mark.parametrize("h", [7, CHUNK_ROWS, CHUNK_ROWS + 1, 2 * CHUNK_ROWS + 37])
def test_blend_is_the_exact_one_within_a_level_across_bands(h):
    image, amap = scene(h=h)
    out = overlay(image, amap, threshold=0.5, scale=0.1)
    assert out.shape == image.shape and out.dtype == np.uint8
    edge = outline(amap > 0.5, width=max(1, min(image.shape[:2]) // 200))
    diff = np.abs(out.astype(np.int16) - np.rint(exact_overlay(image, amap, 0.5, 0.1)))
    assert diff[~edge].max() <= 1


def test_threshold_colour_is_the_same_everywhere_and_weak_evidence_shows_the_part():
    grey = np.full((40, 40, 3), 128, np.uint8)
    at = overlay(grey, np.full((40, 40), 2.0, np.float32), threshold=2.0, scale=1.0)
    # at the threshold the normalised score is 0.5: the ramp's yellow, blended at alpha 0.45 * 0.8
    want = np.rint(128 * (1 - 0.36) + np.array([255, 230, 0]) * 0.36)
    np.testing.assert_allclose(at[5, 5], want, atol=1)
    low = overlay(grey, np.full((40, 40), -50.0, np.float32), threshold=2.0, scale=1.0)
    # far below: dark blue at opacity 0.45 * 0.15, so the image's grey dominates
    np.testing.assert_allclose(low[5, 5], np.rint(128 * (1 - 0.0675) + np.array([0, 0, 130])
                                                  * 0.0675), atol=1)


def test_predicted_region_is_outlined_in_magenta_and_nothing_else():
    image, amap = scene()
    out = overlay(image, amap, threshold=0.5, scale=0.1)
    width = max(1, min(image.shape[:2]) // 200)
    full = amap > 0.5
    naive = full & ~ndimage.binary_erosion(full, iterations=width, border_value=0)
    assert naive.any()
    np.testing.assert_array_equal(outline(full, width), naive)
    assert (out[naive] == MAGENTA).all()
    plain = overlay(image, np.zeros_like(amap), 0.5, 0.1)  # nothing above the threshold
    assert not (plain == MAGENTA).all(axis=-1).any()


def test_outline_on_the_bounding_box_equals_the_whole_image_erosion():
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = np.zeros((60, 80), bool)
        r, c = rng.integers(0, 60), rng.integers(0, 80)
        m[max(0, r - 9):r + rng.integers(1, 12), max(0, c - 9):c + rng.integers(1, 12)] = True
        m[rng.integers(0, 60), rng.integers(0, 80)] = True  # a second, one-pixel region
        for width in (1, 3):
            naive = m & ~ndimage.binary_erosion(m, iterations=width, border_value=0)
            np.testing.assert_array_equal(outline(m, width), naive)
    assert not outline(np.zeros((5, 5), bool)).any()


def test_sizes_must_match():
    with pytest.raises(ValueError, match="sizes differ"):
        overlay(np.zeros((4, 5, 3), np.uint8), np.zeros((5, 4), np.float32), 0.5, 0.1)
