"""Per-position map standardisation (``Detector(map_norm="position")``): fitted on good images
the model does not train on, saved in the model file, refused where it cannot apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import oddeye
from oddeye.api import MIN_NORM_IMAGES, Detector
from oddeye.errors import DataError
from tests.modelfiles import older_file


@pytest.fixture(scope="module")
def grid40(tmp_path_factory):
    from oddeye.data.mvtec import load_dataset
    from oddeye.data.synth import generate

    root = generate(tmp_path_factory.mktemp("g40"), seed=3, classes=["grid"], n_train=40,
                    n_test_good=4, n_test_defect=4, size=64)
    return load_dataset(root)[0]


@pytest.fixture(scope="module")
def normed(grid40):
    return Detector(method="patchcore", size=64, map_norm="position").fit(
        [s.path for s in grid40.train], progress=False)


def test_statistics_come_from_the_held_out_images_grown_to_the_minimum(normed):
    # 10% of 40 would be 4 held-out images; map_norm needs MIN_NORM_IMAGES of them
    assert normed.map_norm_ == MIN_NORM_IMAGES
    assert normed.n_train_ == 40 - MIN_NORM_IMAGES
    assert normed.model_.post.standardizes
    assert normed.model_.post.norm_mean.shape == (8, 8)  # PatchCore's map at stride 8 of 64 px
    assert f"{MIN_NORM_IMAGES} held-out" in normed.threshold_info_["source"]


def test_standardised_model_round_trips_and_scores_z_values(normed, grid40, tmp_path):
    paths = [s.path for s in grid40.test]
    before = normed.predict(paths)
    again = oddeye.load(normed.save(tmp_path / "n.oddeye"))
    assert again.map_norm == "position" and again.map_norm_ == MIN_NORM_IMAGES
    after = again.predict(paths)
    np.testing.assert_array_equal(after.scores, before.scores)
    np.testing.assert_array_equal(after.maps, before.maps)
    # the scores are z-values, not distances: the plain model's differ
    plain = Detector(method="patchcore", size=64, holdout=MIN_NORM_IMAGES / 40).fit(
        [s.path for s in grid40.train], progress=False)
    assert not plain.model_.post.standardizes and plain.map_norm_ == 0
    assert not np.allclose(plain.predict(paths).scores, before.scores)


def test_info_says_the_maps_are_standardised(normed, tmp_path, capsys):
    from oddeye.cli import main

    path = normed.save(tmp_path / "n.oddeye")
    assert main(["info", str(path)]) == 0
    assert (f"maps standardised per position on {MIN_NORM_IMAGES} good images (map_norm)"
            in capsys.readouterr().out)


def test_threshold_uses_out_of_sample_scores(normed, grid40):
    """Scores of the statistics' own images are low by construction; the threshold comes from
    leave-one-out z-maps, which sit higher, as fresh good images do."""
    from oddeye.postprocess import leave_one_out_standardize, position_stats, standardize
    from oddeye.preprocess import load_resized, to_batch

    with torch.inference_mode():
        # as many images as the statistics are fitted on by default
        raw = normed.model_.raw_map(to_batch(load_resized(
            [s.path for s in grid40.test if s.label == 0] + [s.path for s in grid40.train[:6]],
            64)))
        inside = normed.model_.post.finish(standardize(raw, *position_stats(raw)))[1]
        outside = normed.model_.post.finish(leave_one_out_standardize(raw))[1]
    assert float(outside.mean()) > 1.05 * float(inside.mean())  # 1.13 here
    # and the fitted threshold is built from exactly those leave-one-out scores of the held-out
    # images (the Detector's seeded draw of MIN_NORM_IMAGES of the 40)
    held = np.random.default_rng(0).choice(40, size=MIN_NORM_IMAGES, replace=False)
    with torch.inference_mode():
        raw = normed.model_.raw_map(to_batch(load_resized(
            [grid40.train[i].path for i in sorted(held.tolist())], 64)))
        loo = normed.model_.post.finish(leave_one_out_standardize(raw))[1].double()
    assert normed.threshold_info_["good_mean"] == pytest.approx(float(loo.mean()), rel=1e-5)


def test_too_few_good_images_are_a_clear_error(grid40):
    paths = [s.path for s in grid40.train[:20]]
    with pytest.raises(DataError, match=r"20 training images .*needs holdout > 0 and 30"):
        Detector(method="patchcore", size=64, map_norm="position").fit(paths, progress=False)
    with pytest.raises(DataError, match="5 validation images"):
        Detector(method="patchcore", size=64, map_norm="position").fit(
            paths[:15], validation=paths[15:], progress=False)
    with pytest.raises(DataError, match="holdout"):
        Detector(method="patchcore", size=64, map_norm="position", holdout=0).fit(
            [s.path for s in grid40.train], progress=False)


def test_off_by_default_and_any_method_can_use_it(grid40):
    paths = [s.path for s in grid40.train]
    assert Detector().map_norm is None
    det = Detector(method="padim", size=64).fit(paths, progress=False)
    assert det.map_norm_ == 0 and not det.model_.post.standardizes
    assert det.n_train_ == 36  # the usual 10% held out, not grown
    forced = Detector(method="padim", size=64, map_norm="position").fit(paths, progress=False)
    assert forced.map_norm_ == MIN_NORM_IMAGES and forced.model_.post.standardizes


def test_validation_images_are_used_when_given(grid40):
    paths = [s.path for s in grid40.train]
    det = Detector(method="patchcore", size=64, map_norm="position").fit(
        paths[:25], validation=paths[25:], progress=False)
    assert det.map_norm_ == 15 and det.n_train_ == 25


def test_labelled_training_data_are_refused(grid40):
    paths = [s.path for s in grid40.train[:12]] + [s.path for s in grid40.test if s.label][:2]
    with pytest.raises(DataError, match="labelled"):
        Detector(method="anoonly-head", size=64, map_norm="position", steps=5).fit(
            paths, labels=[0] * 12 + [1, 1], progress=False)


def test_reference_shot_methods_refuse_position():
    """Checked before any training: statistics of the training classes do not fit new ones."""
    det = Detector(method="resad", map_norm="position")
    with pytest.raises(DataError, match="reference shots"):
        det._map_norm_applies(det._method(), labels=None, validation=None, n=100)


def test_bad_value_is_a_clear_error(grid40):
    with pytest.raises(DataError, match="map_norm"):
        Detector(method="patchcore", size=64, map_norm="auto").fit(
            [s.path for s in grid40.train], progress=False)


def test_file_from_before_map_norm_loads_without_it(normed, grid40, tmp_path):
    plain = Detector(method="patchcore", size=64).fit([s.path for s in grid40.train[:12]],
                                                      progress=False)
    old = oddeye.load(older_file(plain.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["detector_params.map_norm",
                                       "postprocess.map_norm_images"]))
    assert old.map_norm is None and old.map_norm_ == 0
    paths = [s.path for s in grid40.test[:3]]
    np.testing.assert_array_equal(old.predict(paths).scores, plain.predict(paths).scores)


def test_file_whose_statistics_disagree_with_its_metadata_is_refused(normed, grid40, tmp_path):
    """A standardised model scored without its statistics (or a plain one with someone else's)
    would give other scores than the fitted model: loading says so instead."""
    from oddeye.errors import ModelFileError

    payload = torch.load(normed.save(tmp_path / "n.oddeye"), weights_only=True)
    stats = {k: v for k, v in payload["tensors"].items() if k.startswith("post.")}
    assert set(stats) == {"post.norm_mean", "post.norm_scale"}
    stripped = {**payload, "tensors": {k: v for k, v in payload["tensors"].items()
                                       if k not in stats}}
    torch.save(stripped, tmp_path / "stripped.oddeye")
    with pytest.raises(ModelFileError, match="stripped.oddeye.*lacks the per-position"):
        oddeye.load(tmp_path / "stripped.oddeye")

    plain = Detector(method="patchcore", size=64).fit([s.path for s in grid40.train[:12]],
                                                      progress=False)
    payload = torch.load(plain.save(tmp_path / "p.oddeye"), weights_only=True)
    payload["tensors"].update(stats)
    torch.save(payload, tmp_path / "grafted.oddeye")
    with pytest.raises(ModelFileError, match="grafted.oddeye.*holds the per-position"):
        oddeye.load(tmp_path / "grafted.oddeye")
