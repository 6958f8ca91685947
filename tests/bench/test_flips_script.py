"""The flips selection script's augmentation: the images first, then their mirror images."""

import numpy as np

from tests.bench.scripts import load_script


def test_with_flips_appends_mirror_images_in_order():
    mod = load_script("patchcore_flips_selection")
    a = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    b = np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    out = mod.with_flips([a, b], "hv")
    assert len(out) == 6
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[2], a[:, ::-1])
    np.testing.assert_array_equal(out[5], b[::-1])
    assert len(mod.with_flips([a], "h")) == 2
