"""Backbones fused at the map level (``backbone="a+b"``): the maths, the fit against single-
backbone fits of the same images, save/load, export and the refusals."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import oddeye
from oddeye.api import Detector
from oddeye.data.mvtec import load_dataset
from oddeye.errors import DataError, ModelFileError
from oddeye.methods.fusion import map_stats, standardised_sum

FUSED = "mobilenet_v2+efficientnet_lite0"


def test_standardised_sum_is_the_sum_of_z_maps():
    a, b = torch.rand(2, 4, 4), torch.rand(2, 4, 4) * 10 + 3
    out = standardised_sum([a, b], torch.tensor([0.5, 8.0]), torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(out, (a - 0.5) / 2 + (b - 8) / 4)


def test_standardised_sum_resizes_to_the_first_members_cells():
    a, b = torch.zeros(1, 4, 4), torch.ones(1, 2, 2) * 3
    out = standardised_sum([a, b], torch.zeros(2), torch.ones(2))
    assert out.shape == (1, 4, 4)
    torch.testing.assert_close(out, torch.full((1, 4, 4), 3.0))


def test_map_stats_of_a_constant_map_keep_a_unit_spread():
    assert map_stats(torch.full((3, 4, 4), 2.0)) == (2.0, 1.0)
    mean, std = map_stats(torch.tensor([[[1.0, 3.0]]]))
    assert (mean, std) == (2.0, 1.0)


@pytest.fixture(scope="module")
def grid(synth_root):
    return load_dataset(synth_root, ["grid"])[0]


@pytest.fixture(scope="module")
def fits(grid):
    """The fused PatchCore and one PatchCore per member, fitted on the same images, with the
    same good validation images (so no held-out draw differs)."""
    train = [s.path for s in grid.train]
    val = [s.path for s in grid.test if s.label == 0][:4]
    out = {b: Detector(method="patchcore", backbone=b, size=128).fit(
        train, validation=val, progress=False) for b in (FUSED, *FUSED.split("+"))}
    return out, val


def test_fused_map_is_the_standardised_sum_of_the_members_maps(fits, grid):
    dets, val = fits
    fused = dets[FUSED]
    assert fused.fusion_images_ == len(val)
    x = [s.path for s in grid.test]
    from oddeye.api import load_resized, to_batch

    raw = {}
    for name in (FUSED, *FUSED.split("+")):
        model = dets[name].model_
        with torch.inference_mode():
            raw[name] = model.raw_map(to_batch(load_resized(x, 128)))
            raw[name, "val"] = model.raw_map(to_batch(load_resized(val, 128)))
    expect = sum((raw[b] - raw[b, "val"].double().mean()) / raw[b, "val"].double().std(
        unbiased=False) for b in FUSED.split("+"))
    torch.testing.assert_close(raw[FUSED].double(), expect.double(), rtol=1e-4, atol=1e-4)
    y = np.array([s.label for s in grid.test])
    scores = fused.predict(x).scores
    assert scores[y == 1].mean() > scores[y == 0].mean()


def test_fused_model_round_trips_and_says_what_it_is(fits, grid, tmp_path, capsys):
    from oddeye.cli import main

    det = fits[0][FUSED]
    path = det.save(tmp_path / "f.oddeye")
    again = oddeye.load(path)
    x = [s.path for s in grid.test[:4]]
    np.testing.assert_array_equal(det.predict(x).maps, again.predict(x).maps)
    assert again.fusion_images_ == det.fusion_images_ and again.method_.backbone == FUSED
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"patchcore on {FUSED}" in out
    assert f"maps each standardised on {det.fusion_images_} good images" in out


def test_fused_model_exports_to_onnx(fits, grid, tmp_path):
    pytest.importorskip("onnxruntime")
    from oddeye.export.onnx import OnnxDetector, export_onnx

    det = fits[0][FUSED]
    path = export_onnx(det, tmp_path / "f.onnx")
    x = [s.path for s in grid.test[:3]]
    a, b = det.predict(x), OnnxDetector(path).predict(x)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-4)
    assert json.loads(OnnxDetector(path).meta_["fusion_images"]) == det.fusion_images_
    from oddeye.io.modelinfo import describe_model  # what GET /v1/model answers

    assert describe_model(OnnxDetector(path))["fusion_images"] == det.fusion_images_ > 0
    assert describe_model(det)["fusion_images"] == det.fusion_images_
    assert describe_model(fits[0]["mobilenet_v2"])["fusion_images"] == 0


def test_padim_fuses_too(grid):
    train = [s.path for s in grid.train]
    det = Detector(method="padim", backbone=FUSED, size=128).fit(train, progress=False)
    assert det.fusion_images_ == 2  # the held-out tenth of 16 images, at least 2
    y = np.array([s.label for s in grid.test])
    scores = det.predict([s.path for s in grid.test]).scores
    assert scores[y == 1].mean() > scores[y == 0].mean()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"backbone": "mobilenet_v2+nope"}, "unknown member 'nope'"),
    ({"backbone": "mobilenet_v2+mobilenet_v2"}, "a member is repeated"),
    ({"backbone": "mobilenet_v2+"}, "unknown member ''"),
    ({"backbone": FUSED, "method": "rd4ad"}, "method 'rd4ad' cannot fuse backbones"),
    ({"backbone": FUSED, "weights": "/tmp/x.pth"}, "names one file"),
])
def test_bad_fusions_fail_before_any_image_is_read(kwargs, message, tmp_path):
    det = Detector(**{"method": "patchcore", **kwargs})
    with pytest.raises(DataError, match=message):
        det.check_params()
    with pytest.raises(DataError, match=message):  # a path that does not exist: never read
        det.fit([tmp_path / "missing.png"] * 3, progress=False)


def test_a_fused_file_with_one_members_head_is_refused(fits, tmp_path):
    from tests.modelfiles import older_file

    path = fits[0][FUSED].save(tmp_path / "f.oddeye")
    payload = torch.load(path, weights_only=True)
    drop = [k for k in payload["tensors"] if k.startswith("head.heads.1.")]
    broken = older_file(path, tmp_path / "broken.oddeye", tensors=drop)
    with pytest.raises(ModelFileError, match="broken.oddeye"):
        oddeye.load(broken)


def test_what_each_members_fit_chose_is_reported(fits):
    det = fits[0][FUSED]
    line = det.fit_choices_
    for member in FUSED.split("+"):
        assert f"{member}: position weight" in line
        assert fits[0][member].fit_choices_ in line


def test_few_standardisation_images_warn_and_enough_do_not(grid):
    """The members' weights come from the good images the threshold uses: from fewer than
    ``MIN_FUSION_IMAGES`` the fit says so (the weights then move with the draw)."""
    from oddeye.api import MIN_FUSION_IMAGES

    train = [s.path for s in grid.train]
    few = train[:MIN_FUSION_IMAGES - 1]
    with pytest.warns(UserWarning, match=f"standardised on only {len(few)} good image"):
        Detector(method="patchcore", backbone=FUSED, size=64).fit(
            train, validation=few, progress=False)
    enough = train[:MIN_FUSION_IMAGES]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det = Detector(method="patchcore", backbone=FUSED, size=64).fit(
            train, validation=enough, progress=False)
    assert det.fusion_images_ == MIN_FUSION_IMAGES


def edited(path, out, meta_edit=None, tensor_edit=None):
    """A copy of a model file with its metadata and/or tensors edited by the given functions."""
    payload = torch.load(path, weights_only=True)
    if meta_edit:
        meta = json.loads(payload["meta_json"])
        meta_edit(meta)
        payload["meta_json"] = json.dumps(meta)
    if tensor_edit:
        tensor_edit(payload["tensors"])
    torch.save(payload, out)
    return out


def _put(section, key, value):
    def edit(meta):
        meta[section][key] = value
    return edit


def _drop(section, key):
    def edit(meta):
        del meta[section][key]
    return edit


def _tensor(key, value):
    def edit(tensors):
        tensors[key] = torch.full_like(tensors[key], value)
    return edit


@pytest.mark.parametrize(("meta_edit", "tensor_edit", "message"), [
    (_put("method_params", "backbone", "mobilenet_v2"), None,
     "method_params.backbone is 'mobilenet_v2' but the backbone record says"),
    (_put("method_params", "backbone", "efficientnet_lite0+mobilenet_v2"), None,
     "method_params.backbone is 'efficientnet_lite0"),
    (_drop("backbone", "fusion_images"), None, "lacks fusion_images"),
    (_put("backbone", "fusion_images", 0), None, "backbone.fusion_images is 0"),
    (None, _tensor("head.scale", 0.0), "statistics are not usable"),
    (None, _tensor("head.scale", -1.0), "statistics are not usable"),
    (None, _tensor("head.mean", float("nan")), "statistics are not usable"),
])
def test_edited_fused_files_are_refused_in_one_line(fits, tmp_path, meta_edit, tensor_edit,
                                                    message):
    """Each of these used to load: a NaN or zero scale scored every image NaN ("good"), a
    backbone named differently in two places crashed ``oddeye info`` after loading."""
    path = fits[0][FUSED].save(tmp_path / "f.oddeye")
    bad = edited(path, tmp_path / "bad.oddeye", meta_edit, tensor_edit)
    with pytest.raises(ModelFileError, match=message) as exc:
        oddeye.load(bad)
    assert str(bad) in str(exc.value) and "\n" not in str(exc.value)


def test_a_single_backbone_file_claiming_fusion_statistics_is_refused(fits, tmp_path):
    path = fits[0]["mobilenet_v2"].save(tmp_path / "m.oddeye")
    bad = edited(path, tmp_path / "bad.oddeye", _put("backbone", "fusion_images", 4))
    with pytest.raises(ModelFileError, match="given for the single backbone"):
        oddeye.load(bad)


def test_three_members_fit_and_round_trip(grid, tmp_path):
    """Two or more members; random weights here (ResNet18's file is not installed offline)."""
    train = [s.path for s in grid.train]
    three = "mobilenet_v2+efficientnet_lite0+resnet18"
    det = Detector(method="patchcore", backbone=three, weights=None, size=64).fit(
        train, progress=False)
    assert len(det.model_.head.heads) == 3 and det.model_.head.scale.shape == (3,)
    again = oddeye.load(det.save(tmp_path / "three.oddeye"))
    x = [s.path for s in grid.test[:3]]
    np.testing.assert_array_equal(det.predict(x).scores, again.predict(x).scores)


def test_member_maps_share_the_first_members_cells():
    """A member on other cells is resized before its statistics are taken, so they describe
    the map that is summed."""
    from oddeye.methods.fusion import FusedHead

    class Const(torch.nn.Module):
        def __init__(self, size):
            super().__init__()
            self.size = size

        def forward(self, feats):
            return torch.arange(self.size * self.size, dtype=torch.float32).reshape(
                1, self.size, self.size)

    head = FusedHead([Const(4), Const(2)])
    maps = head.member_maps({})
    assert [tuple(m.shape) for m in maps] == [(1, 4, 4), (1, 4, 4)]


def test_fused_patchcore_exports_with_a_bank_the_search_chunks(grid, tmp_path):
    """The fused head was traced as it runs: PatchCore's search splits the queries into chunks
    sized by the bank, which the tracer froze at the tracing batch, so another batch got wrong
    maps (max map difference 13 on the ONNX benchmark's models). A bank of every patch makes
    the torch search chunk here too."""
    pytest.importorskip("onnxruntime")
    from oddeye.export.onnx import OnnxDetector, export_onnx

    train = [s.path for s in grid.train]
    det = Detector(method="patchcore", backbone=FUSED, size=128, coreset_ratio=1.0).fit(
        train, progress=False)
    assert det.model_.head.heads[0].bank.shape[0] * 2 * 16 * 16 > 1_000_000  # chunked search
    onnx = OnnxDetector(export_onnx(det, tmp_path / "f.onnx"))
    x = [s.path for s in grid.test]
    for batch in (1, 3, len(x)):
        a = det.predict(x, batch_size=batch)
        b = onnx.predict(x, batch_size=batch)
        np.testing.assert_allclose(b.maps, a.maps, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-4, atol=1e-4)
