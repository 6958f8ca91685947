"""Bad hyper-parameters, labels and inputs are refused with errors that name them, before any
image is decoded: no raw numpy/torch traceback at the end of a fit, no NaN threshold saved."""

from __future__ import annotations

import math

import numpy as np
import pytest

from oddeye.api import Detector
from oddeye.data.mvtec import load_dataset
from oddeye.errors import DataError, ImageReadError
from oddeye.io.images import as_rgb_uint8
from oddeye.methods import available_methods, create_method
from oddeye.methods.base import check_flag, check_number
from oddeye.postprocess import PostProcess

#: Paths that do not exist: a check that ran after decoding would say "file not found" instead.
MISSING = ["no/such/a.png", "no/such/b.png", "no/such/c.png"]
FAST = dict(size=64, position=0.0)  # PatchCore at 64 px, no position search: a fit in ~1 s


@pytest.fixture(scope="module")
def grid(synth_root):
    return load_dataset(synth_root, ["grid"])[0]


@pytest.fixture(scope="module")
def fitted(grid):
    return Detector(**FAST).fit([s.path for s in grid.train], progress=False)


# ------------------------------------------------------------------ the shared range check
@pytest.mark.parametrize("value, kwargs, message", [
    (1.5, dict(low=0, high=1, high_open=True), "x must be a finite number in [0, 1), got 1.5"),
    (float("nan"), dict(), "x must be a finite number, got nan"),
    (float("inf"), dict(low=0), "x must be a finite number >= 0, got inf"),
    ("abc", dict(low=0, low_open=True), "x must be a finite number > 0, got 'abc'"),
    (True, dict(integer=True, low=1), "x must be an integer >= 1, got True"),
    (2.0, dict(integer=True, low=1), "x must be an integer >= 1, got 2.0"),
    (0, dict(integer=True, low=1, none_ok=True), "x must be None or an integer >= 1, got 0"),
])
def test_check_number_names_the_parameter_value_and_allowed_range(value, kwargs, message):
    with pytest.raises(DataError) as info:
        check_number("x", value, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("value, kwargs", [
    (0, dict(low=0)), (1, dict(low=0, high=1)), (np.int64(3), dict(integer=True, low=1)),
    (np.float32(0.5), dict(low=0, high=1)), (None, dict(none_ok=True, integer=True)),
])
def test_check_number_accepts_numbers_in_range(value, kwargs):
    check_number("x", value, **kwargs)


def test_check_flag_refuses_strings_and_numbers():
    check_flag("f", False)
    for bad in ("false", 0, None):
        with pytest.raises(DataError, match="f must be true or false"):
            check_flag("f", bad)


# ------------------------------------------------------------ the Detector's own parameters
@pytest.mark.parametrize("param, value, match", [
    ("threshold_sigmas", float("nan"), r"threshold_sigmas must be a finite number >= 0, got nan"),
    ("threshold_sigmas", float("inf"), r"threshold_sigmas .* got inf"),
    ("threshold_sigmas", -1.0, r"threshold_sigmas .*>= 0, got -1.0"),
    ("threshold_sigmas", "3", r"threshold_sigmas .* got '3'"),
    ("sigma", -1, r"sigma must be a finite number >= 0, got -1"),
    ("sigma", float("nan"), r"sigma .* got nan"),
    ("batch_size", 0, r"batch_size must be an integer >= 1, got 0"),
    ("batch_size", -1, r"batch_size .* got -1"),
    ("batch_size", 2.5, r"batch_size .* got 2.5"),
    ("holdout", 2.0, r"holdout must be a finite number in \[0, 1\), got 2.0"),
    ("holdout", 1.0, r"holdout .* got 1.0"),
    ("holdout", -0.5, r"holdout .* got -0.5"),
    ("holdout", "0.1", r"holdout .* got '0.1'"),
    ("size", 16, r"size must be an integer >= 32, got 16"),
    ("size", "256", r"size .* got '256'"),
    ("score", "mean", r"score must be one of \('max', 'topk'\), got 'mean'"),
    ("seed", -1, r"seed must be an integer >= 0, got -1"),
    ("pad", -8, r"pad must be None or an integer >= 0, got -8"),
])
def test_bad_detector_parameter_is_refused_before_decoding(param, value, match):
    with pytest.raises(DataError, match=match):
        Detector(weights=None, **{param: value}).fit(MISSING, progress=False)


def test_valid_detector_parameters_pass_the_checks():
    for params in (dict(), dict(holdout=0, threshold_sigmas=0, sigma=0, pad=0),
                   dict(batch_size=np.int64(2), holdout=np.float64(0.5), score="topk")):
        Detector(**params)._check_params()


def test_nan_scores_never_become_a_saved_threshold(grid, monkeypatch):
    """Scores the model made NaN stop the fit, naming why; the detector stays unfitted."""
    monkeypatch.setattr(Detector, "_scores_of_batch",
                        lambda self, x: np.full(x.shape[0], np.nan))
    det = Detector(**FAST)
    with pytest.raises(DataError, match=r"threshold came out nan .*2 of the 2 scores are NaN"):
        det.fit([s.path for s in grid.train[:12]], progress=False)
    with pytest.raises(Exception, match="not fitted"):
        det.predict(grid.train[0].path)


def test_threshold_from_finite_scores_is_finite():
    det = Detector()
    det.model_ = object()  # only the threshold step runs here
    det._set_unsupervised_threshold(np.array([1.0, 2.0, 3.0]), "3 images")
    assert math.isfinite(det.threshold_) and det.threshold_ > 2.0
    with pytest.raises(DataError, match="1 of the 3 scores are NaN or infinite"):
        det._set_unsupervised_threshold(np.array([1.0, np.inf, 3.0]), "3 images")


def test_postprocess_refuses_an_unknown_score_reduction_when_built():
    with pytest.raises(ValueError, match="reduce must be one of"):
        PostProcess(64, reduce="mean")


# ----------------------------------------------------------------- the methods' parameters
BAD_METHOD_PARAMS = [
    ("patchcore", dict(coreset_ratio="abc"), r"coreset_ratio must be a finite number in \(0, 1\]"
                                             r", got 'abc'"),
    ("patchcore", dict(coreset_ratio=0), r"coreset_ratio .* got 0"),
    ("patchcore", dict(coreset_ratio=1.5), r"coreset_ratio .* got 1.5"),
    ("patchcore", dict(max_bank=0), r"max_bank must be None or an integer >= 1, got 0"),
    ("patchcore", dict(kernel=0), r"kernel must be an integer >= 1, got 0"),
    ("patchcore", dict(proj_dim="x"), r"proj_dim .* got 'x'"),
    ("patchcore", dict(chunk_size=0), r"chunk_size .* got 0"),
    ("patchcore", dict(equal_layers="yes"), r"equal_layers must be true or false, got 'yes'"),
    ("patchcore", dict(position=-1), r"position must be 'auto' or a finite number >= 0"),
    ("patchcore", dict(grid="middle"), r"grid must be 'first', 'last' or one of the layers"),
    ("patchcore", dict(kernel=2), r"kernel must be an odd number of cells .* got 2"),
    ("patchcore", dict(frame_crop="image"), r"frame_crop must be one of \('aggregated', 'taps'"),
    ("patchcore", dict(pool_zeros="no"), r"pool_zeros must be true or false, got 'no'"),
    ("patchcore", dict(image_neighbours=-2), r"image_neighbours must be an integer >= 0"),
    ("patchcore", dict(image_neighbours=3, search_dim=32), r"cannot be combined with search_dim"),
    ("padim", dict(n_features="abc"), r"n_features must be an integer >= 1, got 'abc'"),
    ("padim", dict(n_features=0), r"n_features .* got 0"),
    ("padim", dict(eps=float("nan")), r"eps must be a finite number >= 0, got nan"),
    ("padim", dict(covariance="lw"), r"covariance must be one of .*got .lw."),
    ("anoonly-head", dict(gate="sometimes"), r"gate must be one of \('cv', 'max', 'off'\)"),
    ("anoonly-head", dict(lr=0), r"lr must be a finite number > 0, got 0"),
    ("anoonly-head", dict(steps=-1), r"steps must be an integer >= 0, got -1"),
    ("anoonly-head", dict(hidden=0), r"hidden .* got 0"),
    ("anoonly-head", dict(coreset_ratio="abc"), r"coreset_ratio .* got 'abc'"),
    ("anoonly-head", dict(anoonly="no"), r"anoonly must be true or false"),
    ("anoonly-head", dict(grid="s4"), r"grid must be 'first', 'last' or one of the layers"),
    ("anoonly-head", dict(kernel=4), r"kernel must be an odd number of cells"),
    ("anoonly-head", dict(position="x"), r"position must be 'auto' or a finite number >= 0"),
    ("anoonly-head", dict(frame_crop=3), r"frame_crop must be one of"),
    ("rd4ad", dict(lr=-0.1), r"lr must be a finite number > 0, got -0.1"),
    ("rd4ad", dict(betas=[0.5]), r"betas must be two numbers in \[0, 1\)"),
    ("rd4ad", dict(betas=[0.5, 1.0]), r"betas\[1\] must be a finite number in \[0, 1\)"),
    ("rd4ad", dict(train_batch=0), r"train_batch must be an integer >= 1, got 0"),
    ("rd4ad", dict(epochs=2.5), r"epochs must be None or an integer >= 1, got 2.5"),
    ("rd4ad", dict(expand=0), r"expand .* got 0"),
    ("rd4ad", dict(decoder_blocks=[1, 0, 1]), r"decoder_blocks\[1\] .* got 0"),
    ("rd4ad", dict(decoder_blocks=3), r"decoder_blocks must be None or one block count"),
    ("rd4ad", dict(cache_features="yes"), r"cache_features must be true, false or 'auto'"),
    ("rd4ad", dict(cache_mb=-1), r"cache_mb .* got -1"),
    ("rd4ad", dict(channels_last="no"), r"channels_last must be true or false"),
    ("resad", dict(epochs=0), r"epochs must be an integer >= 1, got 0"),
    ("resad", dict(train_shots="abc"), r"train_shots must be positive integers, got 'abc'"),
    ("resad", dict(train_shots=[2, 0]), r"train_shots must be positive integers"),
    ("resad", dict(pos_dim=6), r"pos_dim must be a positive multiple of 4, got 6"),
    ("resad", dict(boundary_quantile=1.5), r"boundary_quantile .* \[0, 1\], got 1.5"),
    ("resad", dict(lr="fast"), r"lr .* got 'fast'"),
    ("resad", dict(max_size=-1), r"max_size must be None or an integer >= 0, got -1"),
    ("resad", dict(sign_split="no"), r"sign_split must be true or false"),
]


@pytest.mark.parametrize("method, params, match", BAD_METHOD_PARAMS)
def test_bad_method_parameter_is_refused_before_decoding(method, params, match):
    with pytest.raises(DataError, match=match):
        Detector(method=method, size=64, weights=None, **params).fit(MISSING, progress=False)


@pytest.mark.parametrize("method, params, match", BAD_METHOD_PARAMS)
def test_bad_method_parameter_is_refused_by_check_params(method, params, match):
    """What ``oddeye benchmark`` asks before any suite runs: every value a fit would refuse,
    without a backbone or an image."""
    with pytest.raises(DataError, match=match):
        Detector(method=method, weights=None, **params).check_params()


@pytest.mark.parametrize("method", available_methods())
def test_every_method_default_passes_its_checks(method):
    create_method(method).check_params()


@pytest.mark.parametrize("method, params", [
    ("patchcore", dict(coreset_ratio=1, max_bank=None, chunk_size=None, proj_dim=0)),
    ("padim", dict(n_features=np.int64(50), eps=0)),
    ("anoonly-head", dict(steps=0, gate="off")),
    ("rd4ad", dict(epochs=3, betas=[0.9, 0.99], cache_features=True, decoder_blocks=[1, 1, 1])),
    ("resad", dict(max_size=None, train_shots=[1, 2], radius=0, warmup_epochs=0)),
])
def test_valid_method_parameters_are_accepted(method, params):
    create_method(method, **params).check_params()


# ---------------------------------------------------------------------------- calibrate
@pytest.mark.parametrize("labels, match", [
    ([0, 1], r"2 labels for 3 images"),
    ([0, 1, 1, 0], r"4 labels for 3 images"),
    ([0, 2, 1], r"labels\[1\] is 2"),
    ([0, 0.5, 1], r"labels\[1\] is 0.5"),
    ([0, "1", 1], r"labels\[1\] is '1'"),
    ([0, 0, 0], r"both good \(0\) and defective \(1\) images, got only good ones"),
])
def test_calibrate_names_the_label_problem_before_decoding(fitted, labels, match):
    threshold = fitted.threshold_
    with pytest.raises(DataError, match=match):
        fitted.calibrate(MISSING, labels)
    assert fitted.threshold_ == threshold


# -------------------------------------------------------------------- iterables and types
def test_fit_and_calibrate_accept_generators(grid, fitted):
    paths = [s.path for s in grid.train]
    det = Detector(**FAST).fit((p for p in paths), progress=False)
    assert det.threshold_ == fitted.threshold_
    with_val = Detector(**FAST).fit(iter(paths[:12]), validation=(p for p in paths[12:]),
                                    progress=False)
    assert with_val.threshold_info_["source"] == "4 validation images"
    test = grid.test
    det.calibrate((s.path for s in test), (s.label for s in test))
    n_bad = sum(s.label for s in test)
    assert det.threshold_info_["source"] == (f"{len(test)} images ({len(test) - n_bad} good, "
                                             f"{n_bad} defective)")


@pytest.mark.parametrize("item, type_name", [(None, "NoneType"), (3, "int"), (b"x", "bytes"),
                                             ({"a": 1}, "dict")])
def test_predict_and_fit_name_the_type_and_index_of_a_non_image(fitted, grid, item, type_name):
    match = rf"images\[1\] is a {type_name}, not an image"
    with pytest.raises(ImageReadError, match=match):
        fitted.predict([grid.test[0].path, item])
    with pytest.raises(ImageReadError, match=match):
        Detector(weights=None).fit([MISSING[0], item], progress=False)


def test_validation_item_is_named_too():
    with pytest.raises(ImageReadError, match=r"validation\[0\] is a NoneType"):
        Detector(weights=None).fit(MISSING, validation=[None], progress=False)


def test_predict_refuses_a_non_iterable_and_a_negative_batch_size(fitted, grid):
    with pytest.raises(DataError, match="must be an image or an iterable of images, got int"):
        fitted.predict(5)
    with pytest.raises(DataError, match="batch_size must be None or an integer >= 1, got -1"):
        fitted.predict([grid.test[0].path], batch_size=-1)


def test_as_rgb_uint8_names_what_a_zero_dim_array_held():
    with pytest.raises(ImageReadError, match=r"images\[0\]: expected a file path, PIL image or "
                                             r"numpy array .* got NoneType \(None\)"):
        as_rgb_uint8(np.asarray(None), name="images[0]")
    with pytest.raises(ImageReadError, match=r"got int \(7\)"):
        as_rgb_uint8(np.asarray(7), name="x")


def test_check_params_runs_the_fit_checks_without_fitting():
    """``Detector.check_params``: the Detector's and its method's checks, no image needed."""
    from oddeye.errors import OddeyeError

    Detector(method="patchcore", max_bank=100, size=128).check_params()
    with pytest.raises(DataError, match="size"):
        Detector(method="patchcore", size=8).check_params()
    with pytest.raises(OddeyeError, match="'max_bank'"):
        Detector(method="padim", max_bank=100).check_params()


def test_one_image_array_is_refused_where_several_images_are_expected(fitted, grid):
    """``fit``, ``validation`` and references take several images; one (H, W, 3) or (H, W)
    array used to be iterated into H one-pixel strips and fitted without a word. ``predict`` and
    ``iter_predict`` take it as one image."""
    img = np.zeros((64, 64, 3), np.uint8)
    for bad in (img, img[..., 0], img[..., :1].repeat(4, -1)):
        with pytest.raises(DataError, match=r"images is one \(64, 64, \d\) array|images is one "
                                             r"\(64, 64\) array"):
            Detector(**FAST).fit(bad, progress=False)
    with pytest.raises(DataError, match=r"validation is one \(64, 64, 3\) array"):
        Detector(**FAST).fit(MISSING, validation=img, progress=False)
    assert len(fitted.predict(img).scores) == 1
    assert sum(len(p.scores) for p in fitted.iter_predict(img)) == 1
    assert len(fitted.predict(np.stack([img] * 3)).scores) == 3  # (N, H, W, 3): N images


def test_numpy_scalar_parameters_fit_and_save(grid, tmp_path):
    """Hyper-parameters from a numpy grid (np.int64, np.float32) pass the checks, fit (the
    method's seed reaches torch as an int) and save; the file holds Python numbers."""
    import oddeye

    paths = [s.path for s in grid.train[:10]]
    det = Detector(size=np.int64(64), sigma=np.float32(4.0), batch_size=np.int64(2),
                   seed=np.int64(1), position=0.0, max_bank=np.int64(500)).fit(paths,
                                                                                progress=False)
    again = oddeye.load(det.save(tmp_path / "np.oddeye"))
    assert again.size == 64 and type(again.size) is int and again.method_.max_bank == 500
    np.testing.assert_array_equal(again.predict(paths[:2]).scores, det.predict(paths[:2]).scores)


def test_detector_follows_scikit_learns_parameter_contract(grid):
    """get_params(deep) / set_params / sklearn.base.clone: an unfitted copy with the same
    constructor arguments, the method's and the weights included."""
    from sklearn.base import clone

    det = Detector(method="padim", size=64, weights=None, n_features=20, seed=3)
    params = det.get_params(deep=True)
    assert params["weights"] is None and params["n_features"] == 20 and params["seed"] == 3
    twin = clone(det)
    assert twin is not det and twin.get_params() == params
    assert twin.set_params(n_features=30, size=96) is twin
    assert twin.method_params == {"n_features": 30} and twin.size == 96
    assert det.get_params()["n_features"] == 20  # the original is untouched
    fitted = clone(Detector(**FAST)).fit([s.path for s in grid.train[:10]], progress=False)
    assert not hasattr(clone(fitted), "model_")  # a clone is unfitted


@pytest.mark.parametrize("categories, match", [
    (["a"], r"1 categories for 3 images"),
    (["a", "b", "c", "d"], r"4 categories for 3 images"),
    ("abc", r"categories must be one name per image, got the single string 'abc'"),
    (5, r"categories must be one name per image, got int"),
])
def test_categories_must_match_the_images_before_decoding(categories, match):
    with pytest.raises(DataError, match=match):
        Detector(**FAST).fit(MISSING, categories=categories, progress=False)


def test_a_defect_mask_on_an_image_labelled_good_is_refused():
    """Labels and masks that contradict each other: the fit stops naming the image."""
    ims = [np.full((64, 64, 3), 100 + i, np.uint8) for i in range(4)]
    full = np.ones((64, 64), np.uint8)
    with pytest.raises(DataError, match=r"masks\[1\] marks 4096 defect pixels, but its image "
                                        r"is labelled 0"):
        Detector(method="anoonly-head", size=64, steps=1).fit(
            ims, labels=[0, 0, 1, 1], masks=[None, full, full, None], progress=False)


@pytest.mark.parametrize("scores, labels, match", [
    ([1.0, 2.0, 3.0], [0, 2, 1], r"labels\[1\] is 2"),
    ([[1.0, 2.0]], [[0, 1]], r"scores must be one number per image \(1-D\), got shape \(1, 2\)"),
    ([1.0, 2.0, 3.0], [0, 1], r"2 labels of shape \(2,\) for 3 scores"),
])
def test_calibrate_scores_names_the_problem(fitted, scores, labels, match):
    threshold = fitted.threshold_
    with pytest.raises(DataError, match=match):
        fitted.calibrate_scores(np.array(scores), np.array(labels))
    assert fitted.threshold_ == threshold


@pytest.mark.parametrize("method, size, stride", [("patchcore", 250, 16), ("padim", 100, 16),
                                                  ("rd4ad", 72, 16)])
def test_a_size_that_the_deepest_tap_does_not_divide_is_refused(method, size, stride):
    """Its maps would cover more than the image and be stretched onto it (a review found a
    250-px PatchCore map up to 6 px off at the far edge)."""
    with pytest.raises(DataError, match=rf"size {size} is not a multiple of {stride}"):
        Detector(method=method, size=size, weights=None).fit(MISSING, progress=False)
    with pytest.raises(DataError, match=rf"size {size} is not a multiple of {stride}"):
        Detector(method=method, size=size, weights=None).check_params()
