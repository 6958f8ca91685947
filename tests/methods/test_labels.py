"""Labels and masks given to ``Detector.fit``: checked against the images and the method."""

from __future__ import annotations

import numpy as np
import pytest

from oddeye.api import Detector, check_labels, prepare_masks
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.errors import DataError, ImageReadError
from oddeye.io.images import as_mask
from oddeye.methods import create_method
from oddeye.preprocess import resize_mask


@pytest.mark.parametrize("labels, masks, match", [
    ([0, 1], None, "2 labels for 3 images"),
    ([0, 1, 2], None, r"labels\[2\] is 2"),
    ([0, 0.5, 1], None, r"labels\[1\] is 0.5"),
    ([0, 1.0, 1], None, r"labels\[1\] is 1.0"),
    ([0, "1", 1], None, r"labels\[1\] is '1'"),
    ([0, 0, 1], [None, None], "2 masks for 3 images"),
    (None, [None, None, None], "masks were given without labels"),
])
def test_bad_labels_are_refused_naming_the_problem(labels, masks, match):
    with pytest.raises(DataError, match=match):
        check_labels(3, labels, masks, create_method("anoonly-head"))


def test_labels_are_accepted_as_bools_and_numpy_integers():
    method = create_method("anoonly-head")
    assert check_labels(3, [False, np.int64(1), 1], None, method) == [0, 1, 1]
    assert check_labels(3, None, None, method) is None


@pytest.mark.parametrize("method", ["patchcore", "padim"])
def test_unsupervised_method_refuses_labels_before_decoding_anything(method):
    """PatchCore would otherwise put the defective images' patches into its normal bank."""
    with pytest.raises(DataError, match=f"{method!r} learns from good images only"):
        Detector(method=method).fit(["no/such/a.png", "no/such/b.png"], labels=[0, 1],
                                    progress=False)


def test_masks_at_the_images_or_the_models_size_are_resized_and_binarised():
    native = np.zeros((40, 60), np.uint8)
    native[10:20, 30:60] = 255  # a 0/255 mask at the image's own size (H 40, W 60)
    at_model = np.zeros((16, 16), bool)
    at_model[:4] = True
    images = [np.zeros((40, 60, 3), np.uint8), np.zeros((40, 60, 3), np.uint8), "good.png"]
    out = prepare_masks(images, [native, at_model, None], [(40, 60), (40, 60), (30, 30)], 16)
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], resize_mask((native > 0).astype(np.uint8), 16))
    np.testing.assert_array_equal(out[1], at_model.astype(np.uint8))
    assert not out[2].any()  # None: no mask
    assert set(np.unique(out[0])) == {0, 1}


def test_mask_of_another_size_is_refused_naming_the_image():
    with pytest.raises(DataError, match=r"mask of parts/a\.png is 50x40 \(WxH\), but its image "
                                        r"is 60x40 and the model's input 16x16"):
        prepare_masks(["parts/a.png"], [np.zeros((40, 50), np.uint8)], [(40, 60)], 16)
    with pytest.raises(DataError, match=r"masks\[0\] is 16x15"):
        prepare_masks([np.zeros((40, 60, 3))], [np.zeros((15, 16), np.uint8)], [(40, 60)], 16)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 4, 3)), r"must be a non-empty \(H, W\) array"),
    (np.zeros((0, 4)), "non-empty"),
    (np.full((4, 4), np.nan), "NaN"),
    (np.full((4, 4), 2.0), r"in \[0, 1\]"),
    (np.full((4, 4), -1, np.int16), "negative"),
])
def test_bad_mask_arrays_are_refused(bad, match):
    with pytest.raises(ImageReadError, match=match):
        as_mask(bad, "masks[3]")


def test_float_and_sixteen_bit_masks_follow_the_file_rules():
    np.testing.assert_array_equal(as_mask(np.array([[0.2, 0.7]])), [[0, 1]])
    np.testing.assert_array_equal(as_mask(np.array([[0, 40000]], np.uint16)), [[0, 1]])
    np.testing.assert_array_equal(as_mask(np.array([[0, 1]], np.uint16)), [[0, 1]])


def test_native_size_masks_fit_the_same_head_as_masks_resized_beforehand(synth_root):
    """The fit resizes a mask drawn at its image's own size (128 px) to the model's (64 px)
    exactly as a caller resizing it first would: same patches labelled, same scores."""
    cat = load_dataset(synth_root, ["disc"])[0]
    goods = [s.path for s in cat.train[:12]]
    labelled = [s for s in cat.test if s.label == 1][:2]
    native = [load_sample_mask(s, (128, 128)) for s in labelled]
    assert all(m.any() for m in native)
    paths = goods + [s.path for s in labelled]
    labels = [0] * len(goods) + [1] * 2
    scores = []
    for masks in ([None] * len(goods) + native,
                  [np.zeros((64, 64), np.uint8)] * len(goods)
                  + [resize_mask(m, 64) for m in native]):
        det = Detector(method="anoonly-head", size=64, steps=5, gate="off").fit(
            paths, labels=labels, masks=masks, progress=False)
        scores.append(det.decision_function([s.path for s in cat.test]))
    np.testing.assert_array_equal(scores[0], scores[1])
