"""The method contract through the public API: fit, predict, save/load, thresholds, few-shot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import oddeye
from oddeye.api import Detector, f1_optimal_threshold
from oddeye.data.mvtec import load_dataset
from oddeye.errors import DataError, OddeyeError
from oddeye.methods import available_methods, create_method
from tests.modelfiles import older_file

UNSUPERVISED = ["patchcore", "padim"]


@pytest.fixture(scope="module")
def grid(synth_root):
    return load_dataset(synth_root, ["grid"])[0]


@pytest.fixture(scope="module")
def fitted(grid):
    return {m: Detector(method=m, size=128).fit([s.path for s in grid.train], progress=False)
            for m in UNSUPERVISED}


def test_registry_lists_and_builds_methods():
    names = available_methods()
    assert {"patchcore", "padim"} <= set(names)
    m = create_method("patchcore", coreset_ratio=0.2)
    assert m.get_params()["coreset_ratio"] == 0.2
    with pytest.raises(OddeyeError, match="unknown method"):
        create_method("nope")
    with pytest.raises(OddeyeError, match="bad hyper-parameters"):
        create_method("patchcore", not_a_param=1)


@pytest.mark.parametrize("method", UNSUPERVISED)
def test_predict_shapes_and_detects_defects(fitted, grid, method):
    det = fitted[method]
    paths = [s.path for s in grid.test]
    pred = det.predict(paths)
    assert pred.maps.shape == (len(paths), 128, 128)
    assert pred.scores.shape == pred.labels.shape == pred.normalized_scores.shape == (len(paths),)
    y = np.array([s.label for s in grid.test])
    # defective images must score higher than good ones on average (synthetic defects are clear)
    assert pred.scores[y == 1].mean() > pred.scores[y == 0].mean()
    assert np.all((pred.normalized_scores >= 0) & (pred.normalized_scores <= 1))
    order = np.argsort(pred.scores)
    assert np.all(np.diff(pred.normalized_scores[order]) >= 0)
    assert np.array_equal(pred.labels, (pred.scores > det.threshold_).astype(int))


@pytest.mark.parametrize("method", UNSUPERVISED)
def test_save_load_round_trip_gives_identical_scores(fitted, grid, tmp_path, method):
    det = fitted[method]
    path = det.save(tmp_path / f"{method}.oddeye")
    again = oddeye.load(path)
    paths = [s.path for s in grid.test[:4]]
    a, b = det.predict(paths), again.predict(paths)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.maps, b.maps)
    assert again.threshold_ == det.threshold_ and again.method == method


def test_numpy_inputs_match_file_inputs(fitted, grid):
    from oddeye.io.images import read_image

    det = fitted["patchcore"]
    p = [s.path for s in grid.test[:2]]
    arrays = [read_image(x) for x in p]
    np.testing.assert_allclose(det.predict(p).scores, det.predict(arrays).scores)
    gray = arrays[0].mean(axis=2).astype(np.uint8)  # H x W grayscale array is accepted
    assert det.predict(gray).scores.shape == (1,)
    floats = arrays[0].astype(np.float32) / 255.0
    np.testing.assert_allclose(det.predict(floats).scores, det.predict(arrays[0]).scores,
                               rtol=1e-5)


def test_unsupervised_threshold_comes_from_held_out_good_images(fitted):
    det = fitted["patchcore"]
    assert "held-out" in det.threshold_info_["source"]
    assert det.n_train_ == 14  # 16 good images minus the 2 held out
    assert det.normalize_scores(np.array([det.threshold_]))[0] == pytest.approx(0.5)


def test_validation_images_set_the_threshold(grid):
    paths = [s.path for s in grid.train]
    det = Detector(method="padim", size=128).fit(paths[:12], validation=paths[12:],
                                                  progress=False)
    assert det.n_train_ == 12 and "validation" in det.threshold_info_["source"]
    good = det.decision_function(paths[12:])
    assert det.threshold_ == pytest.approx(good.mean() + 3 * good.std())


def test_calibrate_sets_f1_optimal_threshold(fitted, grid):
    det = fitted["patchcore"]
    paths = [s.path for s in grid.test]
    y = np.array([s.label for s in grid.test])
    det2 = Detector.__new__(Detector)
    det2.__dict__.update(det.__dict__)
    det2.calibrate(paths, y)
    s = det2.decision_function(paths)
    f1_at = lambda t: 2 * ((s > t) & (y == 1)).sum() / ((s > t).sum() + y.sum())  # noqa: E731
    best = max(f1_at(t) for t in np.r_[s, s.min() - 1])
    assert f1_at(det2.threshold_) == pytest.approx(best)
    with pytest.raises(DataError, match="both good"):
        det2.calibrate(paths[:2], [0, 0])


def _f1(s: np.ndarray, y: np.ndarray, th: float) -> float:
    return 2 * ((s > th) & (y == 1)).sum() / ((s > th).sum() + y.sum())


def test_f1_optimal_threshold_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 6, size=30).astype(float)  # many ties
        y = rng.integers(0, 2, size=30)
        if y.sum() == 0:
            continue
        t = f1_optimal_threshold(s, y)
        assert _f1(s, y, t) == pytest.approx(max(_f1(s, y, th) for th in np.r_[s, s.min() - 1]))


def test_few_shot_fit_records_shots(grid, tmp_path):
    from oddeye.cli import main

    out = tmp_path / "fs.oddeye"
    assert main(["train", "--data", str(grid.root), "--method", "patchcore", "--size", "128",
                 "--shots", "3", "--seed", "5", "--out", str(out), "--no-progress"]) == 0
    det = oddeye.load(out)
    assert det.meta_["train"]["shots"] == 3 and det.meta_["train"]["seed"] == 5
    assert det.n_train_ == 3  # too few to hold out: threshold from training scores


def test_unfitted_and_empty_inputs_fail_clearly(fitted):
    with pytest.raises(OddeyeError, match="not fitted"):
        Detector().predict(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="no training images"):
        Detector().fit([])
    with pytest.raises(DataError, match="no images"):
        fitted["padim"].predict([])


def test_model_file_from_before_a_method_parameter_existed_is_refused(fitted, tmp_path):
    """A file whose method lacks a parameter of this version would load with today's default
    silently (e.g. a different layer weighting): it must fail naming the file and parameter."""

    from oddeye.errors import ModelFileError

    old = older_file(fitted["patchcore"].save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                     drop=["method_params.equal_layers"])
    with pytest.raises(ModelFileError, match=r"old\.oddeye.*\['equal_layers'\].*retrain"):
        oddeye.load(old)


def test_model_file_from_before_search_dim_still_loads_and_scores_the_same(grid, tmp_path):
    """``search_dim=None`` and independent coreset chunks are what older PatchCore files
    computed: they load without those parameters and without the (empty) projection buffers,
    and score exactly as before."""

    # what those files held: no position columns (position 0 builds none)
    det = Detector(method="patchcore", size=128, position=0.0).fit(
        [s.path for s in grid.train], progress=False)
    # sequential_chunks came later still (chunks were independent), position later again
    old = older_file(det.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                     drop=["method_params.search_dim", "method_params.sequential_chunks",
                           "method_params.position"],
                     tensors=["head.proj_mean", "head.proj_basis"])
    again = oddeye.load(old)
    assert again.method_.sequential_chunks is False and again.method_.search_dim is None
    assert again.method_.position == 0.0
    paths = [s.path for s in grid.test[:3]]
    np.testing.assert_array_equal(again.predict(paths).scores, det.predict(paths).scores)


def test_detector_seed_reaches_every_seeded_method(grid):
    """``Detector(seed=S)`` (the CLI's --seed) seeds the method too, not only the holdout draw:
    before, RD4AD refits "with seed 1 and 2" were the same run as seed 0."""
    import inspect

    from oddeye.methods import get_method

    for name in available_methods():
        if "seed" in inspect.signature(get_method(name).__init__).parameters:
            assert Detector(method=name, seed=3)._method().seed == 3, name
    paths = [s.path for s in grid.train]
    a = Detector(method="padim", size=64, seed=0).fit(paths, progress=False)
    b = Detector(method="padim", size=64, seed=1).fit(paths, progress=False)
    assert b.method_.get_params()["seed"] == 1
    assert not np.array_equal(a.model_.head.index, b.model_.head.index)  # its channel draw


def test_framed_model_round_trips_and_older_files_load_unframed(grid, tmp_path):
    """``pad`` travels in the file (the backbone's and the detector's record must agree); a file
    from before it loads unframed and scores exactly as it did."""
    import json

    import torch

    from oddeye.backbones import BackboneError
    from oddeye.errors import ModelFileError

    train, paths = [s.path for s in grid.train], [s.path for s in grid.test[:3]]
    framed = Detector(method="patchcore", size=128, pad=16, position=0.0).fit(
        train, progress=False)
    again = oddeye.load(framed.save(tmp_path / "framed.oddeye"))
    assert again.pad == again.pad_ == 16 and again.model_.extractor.pad == 16
    np.testing.assert_array_equal(again.predict(paths).scores, framed.predict(paths).scores)

    plain = Detector(method="patchcore", size=128, pad=0, position=0.0).fit(
        train, progress=False)
    assert not np.allclose(plain.predict(paths).scores, framed.predict(paths).scores)
    payload = torch.load(plain.save(tmp_path / "plain.oddeye"), weights_only=True)
    meta = json.loads(payload["meta_json"])
    del meta["detector_params"]["pad"], meta["backbone"]["pad"]
    payload["meta_json"] = json.dumps(meta)
    torch.save(payload, tmp_path / "old.oddeye")
    old = oddeye.load(tmp_path / "old.oddeye")
    assert old.pad is None and old.pad_ == 0
    np.testing.assert_array_equal(old.predict(paths).scores, plain.predict(paths).scores)

    meta["detector_params"]["pad"] = 16  # says framed, but the backbone was saved unframed
    payload["meta_json"] = json.dumps(meta)
    torch.save(payload, tmp_path / "liar.oddeye")
    with pytest.raises(ModelFileError, match=r"liar\.oddeye.*pad=16.*pad=0"):
        oddeye.load(tmp_path / "liar.oddeye")
    meta["detector_params"]["pad"] = meta["backbone"]["pad"] = -8  # agree, but impossible
    payload["meta_json"] = json.dumps(meta)
    torch.save(payload, tmp_path / "bad.oddeye")
    with pytest.raises(ModelFileError, match=r"bad\.oddeye: bad backbone record.*pad must be"):
        oddeye.load(tmp_path / "bad.oddeye")
    with pytest.raises(BackboneError, match="pad must be"):
        Detector(pad=12).fit(train, progress=False)


@pytest.mark.parametrize("method", ["patchcore", "anoonly-head"])
def test_frame_is_cut_after_the_aggregation_and_older_files_keep_the_taps_order(
        grid, tmp_path, method):
    """By default PatchCore-style heads aggregate over the framed maps and cut the frame from
    the embedding (a border cell averages 9 cells like every other); ``frame_crop="taps"`` (the
    order of files written before the choice) crops each tap first. A file without the
    parameter loads in the taps order and scores exactly as it did."""

    import torch

    from oddeye.methods.patchcore import aggregate

    train, paths = [s.path for s in grid.train], [s.path for s in grid.test[:3]]
    extra: dict = {}
    if method == "anoonly-head":
        from oddeye.data.mvtec import load_sample_mask
        from oddeye.preprocess import resize_mask

        bad = [s for s in grid.test if s.label == 1][:2]
        extra = {"labels": [0] * len(train) + [1] * 2,
                 "masks": [np.zeros((128, 128), np.uint8)] * len(train)
                 + [resize_mask(load_sample_mask(s, (128, 128)), 128) for s in bad]}
        train = train + [s.path for s in bad]
        paths = [s.path for s in grid.test if s.label == 0][:3]
    params = {"steps": 20} if method == "anoonly-head" else {}
    agg = Detector(method=method, size=128, position=0.0, **params).fit(
        train, progress=False, **extra)
    assert agg.pad_ == 16 and agg.method_.frame_crop == "aggregated"
    assert not agg.model_.extractor.crop and agg.model_.head.frame == 2  # 16 px at stride 8
    x = agg.model_.normalize(torch.as_tensor(np.stack(
        [np.zeros((128, 128, 3), np.uint8)])).permute(0, 3, 1, 2))
    with torch.inference_mode():
        feats = agg.model_.extractor(x)
        assert feats["s8"].shape[-1] == (128 + 32) // 8  # framed taps reach the head
        emb = agg.model_.head.embed(feats)
        ref = aggregate(feats, ["s8", "s16"], 3, True,
                        cosine=agg.model_.head.cosine)[..., 2:-2, 2:-2]
    torch.testing.assert_close(emb[:, :ref.shape[1]], ref)
    assert agg.predict(paths).maps.shape == (3, 128, 128)

    taps = Detector(method=method, size=128, position=0.0, frame_crop="taps", **params).fit(
        train, progress=False, **extra)
    assert taps.model_.extractor.crop and taps.model_.head.frame == 0
    assert not np.allclose(taps.predict(paths).scores, agg.predict(paths).scores)
    again = oddeye.load(agg.save(tmp_path / "agg.oddeye"))
    assert not again.model_.extractor.crop and again.model_.head.frame == 2
    np.testing.assert_array_equal(again.predict(paths).scores, agg.predict(paths).scores)
    old = oddeye.load(older_file(taps.save(tmp_path / "taps.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.frame_crop"]))
    assert old.method_.frame_crop == "taps" and old.model_.extractor.crop
    np.testing.assert_array_equal(old.predict(paths).scores, taps.predict(paths).scores)
    with pytest.raises(DataError, match="frame_crop must be one of .*aggregated.*taps"):
        # refused before any image is read: the missing file is never reached
        Detector(method=method, size=128, frame_crop="image", **params).fit(
            [tmp_path / "missing.png"] * len(train), progress=False, **extra)


def test_zero_pooled_border_travels_in_the_file_and_older_files_pool_without(grid, tmp_path):
    """``pool_zeros`` (border cells' average counts the zero padding) is saved with the model;
    a file from before the parameter loads with the plain average and scores as it did."""

    train, paths = [s.path for s in grid.train], [s.path for s in grid.test[:3]]
    zeros = Detector(method="patchcore", size=64, pad=0, position=0.0, pool_zeros=True).fit(
        train, progress=False)
    again = oddeye.load(zeros.save(tmp_path / "zeros.oddeye"))
    assert again.model_.head.pool_zeros
    np.testing.assert_array_equal(again.predict(paths).scores, zeros.predict(paths).scores)
    plain = Detector(method="patchcore", size=64, pad=0, position=0.0).fit(train, progress=False)
    assert not np.allclose(plain.predict(paths).scores, zeros.predict(paths).scores)
    old = oddeye.load(older_file(plain.save(tmp_path / "plain.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.pool_zeros"]))
    assert not old.model_.head.pool_zeros
    np.testing.assert_array_equal(old.predict(paths).scores, plain.predict(paths).scores)


def test_coarse_patch_grid_travels_in_the_file_and_older_files_use_the_finest(grid,
                                                                              tmp_path):
    """``grid="last"`` gives maps of the s16 tap's cells, cuts a 16-px frame as one cell, is
    saved with the model; a file from before the parameter loads with the paper's grid."""

    train, paths = [s.path for s in grid.train], [s.path for s in grid.test[:3]]
    coarse = Detector(method="patchcore", size=64, position=0.0, grid="last").fit(
        train, progress=False)
    assert coarse.model_.head.frame == 1
    with torch.inference_mode():
        assert coarse.model_.raw_map(torch.zeros(1, 3, 64, 64)).shape[-2:] == (4, 4)
    again = oddeye.load(coarse.save(tmp_path / "coarse.oddeye"))
    assert again.model_.head.grid == "last"
    np.testing.assert_array_equal(again.predict(paths).scores, coarse.predict(paths).scores)
    fine = Detector(method="patchcore", size=64, position=0.0).fit(train, progress=False)
    assert fine.model_.head.frame == 2
    assert not np.allclose(fine.predict(paths).scores, coarse.predict(paths).scores)
    old = oddeye.load(older_file(fine.save(tmp_path / "fine.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.grid"]))
    assert old.model_.head.grid == "first"
    np.testing.assert_array_equal(old.predict(paths).scores, fine.predict(paths).scores)


def test_cosine_patches_travel_in_the_file_and_older_files_compare_raw_features(grid,
                                                                                 tmp_path):
    """``cosine`` is saved with the model and changes the scores; a file from before the
    parameter loads comparing the raw (width-scaled) features, as it was fitted."""

    train, paths = [s.path for s in grid.train], [s.path for s in grid.test[:3]]
    cos = Detector(method="patchcore", size=64, position=0.0, cosine=True).fit(
        train, progress=False)
    again = oddeye.load(cos.save(tmp_path / "cos.oddeye"))
    assert again.model_.head.cosine
    np.testing.assert_array_equal(again.predict(paths).scores, cos.predict(paths).scores)
    raw = Detector(method="patchcore", size=64, position=0.0, cosine=False).fit(
        train, progress=False)
    assert not np.allclose(raw.predict(paths).scores, cos.predict(paths).scores)
    old = oddeye.load(older_file(raw.save(tmp_path / "raw.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.cosine"]))
    assert not old.model_.head.cosine
    np.testing.assert_array_equal(old.predict(paths).scores, raw.predict(paths).scores)


def test_magnitude_term_travels_in_the_file_and_older_files_load_without_it(grid, tmp_path):
    """``magnitude`` is saved with the model (the bank is one column per stage wider) and
    changes the scores; a file from before the parameter loads without the term."""

    train, paths = [s.path for s in grid.train], [s.path for s in grid.test[:3]]
    mag = Detector(method="patchcore", size=64, position=0.0, magnitude=1.0).fit(
        train, progress=False)
    again = oddeye.load(mag.save(tmp_path / "mag.oddeye"))
    assert again.model_.head.magnitude == 1.0
    np.testing.assert_array_equal(again.predict(paths).scores, mag.predict(paths).scores)
    plain = Detector(method="patchcore", size=64, position=0.0).fit(train, progress=False)
    assert mag.model_.head.bank.shape[1] == plain.model_.head.bank.shape[1] + 2
    assert not np.allclose(plain.predict(paths).scores, mag.predict(paths).scores)
    old = oddeye.load(older_file(plain.save(tmp_path / "plain.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.magnitude"]))
    assert old.model_.head.magnitude == 0.0
    np.testing.assert_array_equal(old.predict(paths).scores, plain.predict(paths).scores)


def test_default_frame_is_the_methods_rounded_up_to_its_deepest_tap(grid):
    """``pad=None`` takes the method's ``default_pad`` (PatchCore and its semi-supervised head
    16 px, the rest none), rounded up so a stride-32 tap still crops whole cells."""
    from oddeye.api import default_pad

    assert default_pad(create_method("patchcore")) == 16
    assert default_pad(create_method("anoonly-head")) == 16
    assert default_pad(create_method("patchcore", layers=["s8", "s16", "s32"])) == 32
    assert default_pad(create_method("padim")) == default_pad(create_method("rd4ad")) == 0
    det = Detector(method="patchcore", size=64, layers=["s8", "s16", "s32"], position=0.0).fit(
        [s.path for s in grid.train[:8]], progress=False)
    assert det.pad is None and det.pad_ == det.model_.extractor.pad == 32


def test_holdout_of_one_category_is_the_plain_draw():
    """Single-category fits hold out exactly the images they held out before stratifying."""
    from oddeye.api import holdout_draw

    for cats in (None, ["a"] * 50):
        got = holdout_draw(np.random.default_rng(3), 50, 5, cats)
        assert got == sorted(np.random.default_rng(3).choice(50, size=5, replace=False).tolist())


def test_holdout_of_several_categories_is_stratified():
    """A unified fit used to draw its held-out images across categories: with few images all
    of them could come from one category, whose scale then set the threshold for all."""
    from oddeye.api import holdout_draw

    cats = ["big"] * 60 + ["small"] * 12 + ["tiny"] * 2 + ["one"]
    for seed in range(20):
        got = holdout_draw(np.random.default_rng(seed), len(cats), 8, cats)
        per = {c: sum(cats[i] == c for i in got) for c in set(cats)}
        assert per["big"] == 6 and per["small"] == 1  # 8 * 60/75 = 6.4, 8 * 12/75 = 1.28
        assert per["tiny"] == 1 and per["one"] == 0  # at least one, but never the last one
        assert got == sorted(set(got))
    draws = {tuple(holdout_draw(np.random.default_rng(s), len(cats), 8, cats)) for s in (0, 1)}
    assert len(draws) == 2  # still a random draw within each category


def test_unified_fit_holds_out_images_of_every_category(synth_root, monkeypatch):
    import oddeye.api

    grid, disc = load_dataset(synth_root, ["grid", "disc"])
    paths = [s.path for s in grid.train[:8]] + [s.path for s in disc.train[:8]]
    cats = ["grid"] * 8 + ["disc"] * 8
    drawn = []
    real = oddeye.api.holdout_draw
    monkeypatch.setattr(oddeye.api, "holdout_draw",
                        lambda *a: drawn.append(real(*a)) or drawn[-1])
    det = Detector(method="padim", size=64, holdout=0.15).fit(paths, categories=cats,
                                                              progress=False)
    assert det.n_train_ == 16 - 2  # round(0.15 * 16) = 2: one of each category
    assert sorted(cats[i] for i in drawn[0]) == ["disc", "grid"]
