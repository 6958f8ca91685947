"""The within-image diagnosis: variants parsed, each image scored against its own mask."""

import numpy as np

from tests.bench.scripts import load_script


def test_variants_name_patchcore_by_default_or_a_prefixed_method():
    mod = load_script("within_image_diagnosis")
    assert mod.parse_variant('{"cosine": false}') == ("patchcore", {"cosine": False})
    assert mod.parse_variant("rd4ad:{}") == ("rd4ad", {})
    assert mod.parse_variant('padim:{"d": 2}') == ("padim", {"d": 2})


def test_each_map_is_scored_against_its_own_mask_only():
    mod = load_script("within_image_diagnosis")
    ramp = np.arange(16.0).reshape(4, 4)
    top, bottom = np.zeros((4, 4), int), np.zeros((4, 4), int)
    top[:2], bottom[2:] = 1, 1
    # the same map: perfect against a mask of its high half, zero against its low half
    got = mod.per_image_auroc(np.stack([ramp, ramp]), np.stack([bottom, top]))
    np.testing.assert_allclose(got, [1.0, 0.0])
