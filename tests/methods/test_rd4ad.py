"""RD4AD: loss/map maths, architecture shapes per teacher, training, frozen teacher, persistence."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import oddeye
from oddeye.api import Detector
from oddeye.backbones import FeatureExtractor
from oddeye.data.mvtec import load_dataset
from oddeye.errors import DataError, OddeyeError
from oddeye.evaluation import evaluate_category
from oddeye.methods import TrainSet, available_methods, create_method
from oddeye.methods.rd4ad import (
    PROJ_LR,
    RD4ADHead,
    TailAverage,
    anomaly_map,
    averaging_start,
    distillation_loss,
    projection_loss,
    stage_maps,
    stage_statistics,
)
from oddeye.preprocess import Normalize, PreprocessConfig, load_resized, to_batch
from tests.modelfiles import older_file

SIZE = 128
#: few epochs at a small batch: enough optimiser steps for the synthetic discs at 128 px
FAST = {"epochs": 6, "train_batch": 2}


# ------------------------------------------------------------------------------------ maths
def test_loss_is_zero_for_a_perfect_student_and_two_for_an_opposite_one():
    torch.manual_seed(0)
    t = [torch.randn(2, 5, 8, 8), torch.randn(2, 7, 4, 4)]
    for kind in ("pixel", "flat"):
        assert float(distillation_loss(t, t, kind)) == pytest.approx(0.0, abs=1e-6)
        # cosine ignores scale: a student 3x too large is still perfect
        assert float(distillation_loss(t, [3 * x for x in t], kind)) == pytest.approx(0, abs=1e-6)
        assert float(distillation_loss(t, [-x for x in t], kind)) == pytest.approx(4.0, abs=1e-5)
    with pytest.raises(DataError, match="loss"):
        distillation_loss(t, t, "l2")


def test_pixel_and_flat_losses_differ_as_documented():
    # one pixel of the student is flipped: per-pixel loss = 2 / n_pixels; the flat loss
    # weighs that pixel by its share of the map's squared norm instead
    t = torch.ones(1, 3, 2, 2)
    t[0, :, 0, 0] = 10.0
    s = t.clone()
    s[0, :, 1, 1] *= -1
    assert float(distillation_loss([t], [s], "pixel")) == pytest.approx(2 / 4, abs=1e-6)
    flat = 1 - (t * s).sum() / (t.norm() * s.norm())
    assert float(distillation_loss([t], [s], "flat")) == pytest.approx(float(flat), abs=1e-6)


def test_anomaly_map_sums_upsampled_stage_distances():
    torch.manual_seed(0)
    fine, coarse = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4)
    s_fine, s_coarse = fine.clone(), coarse.clone()
    s_coarse[0, :, 1, 2] *= -1  # one coarse cell is wrong: distance 2 there, 0 elsewhere
    m = anomaly_map([fine, coarse], [s_fine, s_coarse])
    assert m.shape == (1, 8, 8)
    # bilinear x2 (half-pixel centres): the cell's four fine pixels get 2 * (3/4)^2, and nothing
    # leaks further than one fine pixel around them
    np.testing.assert_allclose(m[0, 2:4, 4:6].numpy(), np.full((2, 2), 1.125), atol=1e-5)
    assert float(m.max()) == pytest.approx(1.125, abs=1e-5)
    outside = m[0].clone()
    outside[1:5, 3:7] = 0
    assert float(outside.abs().max()) < 1e-5
    assert float(anomaly_map([fine, coarse], [fine, coarse]).abs().max()) < 1e-5


# --------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("backbone,size", [("mobilenet_v2", 64), ("efficientnet_lite0", 64),
                                           ("resnet18", 64), ("wide_resnet50_2", 32)])
def test_student_rebuilds_every_teacher_shape(backbone, size):
    method = create_method("rd4ad", backbone=backbone)
    fx = FeatureExtractor(backbone, method.layers, weights=None)
    head = method.build_head(fx.channels, fx.strides).eval()
    with torch.inference_mode():
        feats = fx(torch.randn(2, 3, size, size))
        student = head.student([feats[k] for k in head.layers])
        raw = head(feats)
    assert [tuple(s.shape) for s in student] == [tuple(feats[k].shape) for k in head.layers]
    fine = size // fx.strides[head.layers[0]]
    assert raw.shape == (2, fine, fine)  # the finest tapped stage
    assert torch.all(raw >= -1e-5) and torch.all(raw <= 2 * len(head.layers) + 1e-5)


@pytest.mark.parametrize("block", ["basic", "bottleneck", "light"])
def test_block_kinds_and_layer_orders_build(block):
    method = create_method("rd4ad", layers=["s16", "s4", "s8"], block=block,
                           decoder_blocks=[1, 1, 1], ocbe_blocks=1, embed_dim=64)
    fx = FeatureExtractor("mobilenet_v2", method.layers, weights=None)
    head = method.build_head(fx.channels, fx.strides)
    assert head.layers == ["s4", "s8", "s16"]  # ordered fine -> coarse whatever the input order
    assert head(fx(torch.randn(1, 3, 64, 64))).shape == (1, 16, 16)


@pytest.mark.parametrize("block", ["basic", "bottleneck", "light"])
def test_inference_runs_a_batchnorm_folded_student_that_never_goes_stale(block):
    """Eval without gradients uses a BN-folded copy: same maps, rebuilt after any weight change."""
    method = create_method("rd4ad", block=block, decoder_blocks=[1, 1, 1], ocbe_blocks=1,
                           embed_dim=64)
    fx = FeatureExtractor("mobilenet_v2", method.layers, weights=None)
    head = method.build_head(fx.channels, fx.strides)
    g = torch.Generator().manual_seed(0)
    for mod in head.modules():  # non-trivial statistics, so folding has something to do
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(generator=g)
            mod.running_var.uniform_(0.5, 2.0, generator=g)
    head.eval()
    with torch.no_grad():
        feats = fx(torch.randn(2, 3, 64, 64, generator=g))

    def plain_and_fast() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            plain = head(feats).detach()  # gradients on: the module as defined
        with torch.no_grad():
            return plain, head(feats)  # no gradients: the folded copy

    plain, fast = plain_and_fast()
    with torch.no_grad():
        ocbe, decoder = head._folded_student()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in decoder.modules())
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-4)
    assert "_folded" not in "".join(head.state_dict())  # the copy is never saved
    with torch.no_grad():
        head.decoder.stages[0].blocks[0].body[0].weight.mul_(3.0)  # an in-place weight change
    plain2, fast2 = plain_and_fast()
    assert not torch.allclose(plain2, plain)
    torch.testing.assert_close(fast2, plain2, atol=1e-5, rtol=1e-4)
    w = head.decoder.stages[-1].blocks[0].body[0].weight
    w.data = w.data * 0.5  # re-pointed storage, no in-place version bump
    plain3, fast3 = plain_and_fast()
    assert not torch.allclose(plain3, plain2)
    torch.testing.assert_close(fast3, plain3, atol=1e-5, rtol=1e-4)


def test_bad_hyper_parameters_name_the_argument():
    with pytest.raises(DataError, match="loss"):
        create_method("rd4ad", loss="mse")
    with pytest.raises(DataError, match="block"):
        create_method("rd4ad", block="transformer")
    with pytest.raises(DataError, match="epochs"):
        create_method("rd4ad", epochs=0)
    for bad_steps in (0, True, "many", 2.5):
        with pytest.raises(DataError, match="steps"):
            create_method("rd4ad", steps=bad_steps)
    with pytest.raises(DataError, match="epochs or steps"):
        create_method("rd4ad", steps=None)  # and no epochs: no training length at all
    fx = FeatureExtractor("mobilenet_v2", ["s8"], weights=None)
    with pytest.raises(DataError, match="layers"):
        create_method("rd4ad", layers=["s8"]).build_head(fx.channels, fx.strides)
    with pytest.raises(OddeyeError):
        create_method("rd4ad", layers=["s4", "s8", "s16"]).build_head(fx.channels, fx.strides)


def test_rd4ad_is_registered():
    assert "rd4ad" in available_methods()


# ------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def disc(synth_root):
    return load_dataset(synth_root, ["disc"])[0]


@pytest.fixture(scope="module")
def fitted(disc):
    """One short fit on the synthetic disc, with the teacher's weights recorded before it."""
    det = Detector(method="rd4ad", size=SIZE, **FAST)
    method = det._method()
    before = FeatureExtractor(method.backbone, method.layers).state_dict()
    det.fit([s.path for s in disc.train], progress=False)
    return det, before


def test_loss_falls(fitted):
    det, _ = fitted
    hist = det.model_.head.history
    assert hist.shape == (FAST["epochs"], 2)
    assert float(hist[-1, 0]) < 0.6 * float(hist[0, 0])
    assert torch.all(hist[:, 1] > 0)  # seconds per epoch are recorded


def test_maps_localise_synthetic_defects(fitted, disc):
    det, _ = fitted
    res = evaluate_category(det, disc, progress=False)
    assert res["pixel_auroc"] > 0.85
    assert res["image_auroc"] > 0.7


def test_teacher_stays_frozen(fitted):
    det, before = fitted
    ext = det.model_.extractor
    assert not any(p.requires_grad for p in ext.parameters())
    assert not ext.training and not det.model_.head.training
    after = ext.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def _small_set(disc, n: int = 6, layers: tuple[str, ...] | None = None,
               ) -> tuple[TrainSet, FeatureExtractor]:
    x = to_batch(load_resized([s.path for s in disc.train[:n]], 64))
    cfg = PreprocessConfig()
    fx = FeatureExtractor("mobilenet_v2", layers or create_method("rd4ad").layers)
    return TrainSet(images=x, extractor=fx, normalize=Normalize(cfg.mean, cfg.std),
                    progress=False), fx


def _loss_histories(data: TrainSet, fx: FeatureExtractor, runs: list[dict]) -> list[torch.Tensor]:
    """Per-epoch losses of one fresh fit per parameter set in ``runs``."""
    out = []
    for params in runs:
        method = create_method("rd4ad", **params)
        head = method.build_head(fx.channels, fx.strides)
        method.fit_head(head, data)
        out.append(head.history[:, 0])
    return out


def test_steps_set_the_epochs_from_the_training_set_size(disc):
    assert create_method("rd4ad").epochs is None  # the default trains by steps
    assert create_method("rd4ad", epochs=7).epochs_for(1000) == 7  # given epochs win
    assert create_method("rd4ad", epochs=7, steps=10**6).epochs_for(4) == 7
    method = create_method("rd4ad", steps=10, train_batch=4)
    assert [method.epochs_for(n) for n in (4, 5, 8, 40, 41)] == [10, 5, 5, 1, 1]
    assert method.epochs_for(8, n_categories=3) == 15  # each category as long as alone
    data, fx = _small_set(disc, 6)  # 2 batches per epoch: 3 steps round up to 2 epochs
    head = method.build_head(fx.channels, fx.strides)
    create_method("rd4ad", steps=3, train_batch=4).fit_head(head, data)
    assert head.history.shape[0] == 2
    data.categories = ["a", "b", "a", "b", "b", "a"]  # a unified fit of two: 6 steps, 3 epochs
    create_method("rd4ad", steps=3, train_batch=4).fit_head(head, data)
    assert head.history.shape[0] == 3


def test_only_head_parameters_get_gradients(disc):
    method = create_method("rd4ad", epochs=1, train_batch=4, cache_features=False)
    data, fx = _small_set(disc, 4)
    head = method.build_head(fx.channels, fx.strides)
    start = copy.deepcopy(head.state_dict())
    method.fit_head(head, data)
    assert all(p.grad is None for p in fx.parameters())
    grads = [p.grad for p in head.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert any(not torch.equal(start[k], v) for k, v in head.state_dict().items())
    assert not head.training


def test_cached_and_streamed_teacher_features_train_the_same(disc):
    x = to_batch(load_resized([s.path for s in disc.train[:8]], 64))
    cfg = PreprocessConfig()
    heads = []
    for cache in (True, False):
        method = create_method("rd4ad", epochs=2, train_batch=4, cache_features=cache)
        fx = FeatureExtractor(method.backbone, method.layers)
        head = method.build_head(fx.channels, fx.strides)
        method.fit_head(head, TrainSet(images=x, extractor=fx, progress=False,
                                       normalize=Normalize(cfg.mean, cfg.std)))
        heads.append(head)
    torch.testing.assert_close(heads[0].history[:, 0], heads[1].history[:, 0], rtol=1e-4,
                               atol=1e-5)


def test_save_load_round_trip_gives_identical_scores(fitted, disc, tmp_path):
    det, _ = fitted
    path = det.save(tmp_path / "rd4ad.oddeye")
    again = oddeye.load(path)
    assert isinstance(again.model_.head, RD4ADHead) and not again.model_.head.training
    paths = [s.path for s in disc.test[:4]]
    a, b = det.predict(paths), again.predict(paths)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.maps, b.maps)
    assert again.threshold_ == det.threshold_
    assert again.method_.get_params() == det.method_.get_params()
    torch.testing.assert_close(again.model_.head.history, det.model_.head.history)


def test_model_file_from_before_pseudo_loads_as_the_plain_method(fitted, disc, tmp_path):
    """Older files have no ``pseudo`` and were trained on clean inputs (``pseudo=0``)."""

    det, _ = fitted
    old = oddeye.load(older_file(det.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.pseudo"]))
    assert old.method_.pseudo == 0.0
    paths = [s.path for s in disc.test[:2]]
    np.testing.assert_array_equal(old.predict(paths).scores, det.predict(paths).scores)


def test_unified_model_over_two_categories(synth_root):
    cats = load_dataset(synth_root, ["grid", "disc"])
    paths = [s.path for c in cats for s in c.train[:6]]
    names = [c.name for c in cats for _ in c.train[:6]]
    det = Detector(method="rd4ad", size=64, epochs=1, train_batch=8).fit(
        paths, categories=names, progress=False)
    assert det.categories_ == ["disc", "grid"]
    assert det.predict([c.test[0].path for c in cats]).maps.shape == (2, 64, 64)


def test_cli_train_test_predict(synth_root, tmp_path):
    from oddeye.cli import main

    model = tmp_path / "rd.oddeye"
    assert main(["train", "--data", str(synth_root), "--category", "disc", "--method", "rd4ad",
                 "--size", "64", "--param", "epochs=1", "--param", "loss=flat", "--out",
                 str(model), "--no-progress"]) == 0
    det = oddeye.load(model)
    assert det.method_.loss == "flat" and det.method_.epochs == 1
    assert main(["test", "--model", str(model), "--data", str(synth_root / "disc"),
                 "--no-progress"]) == 0
    imgs = sorted((synth_root / "disc" / "test").rglob("*.png"))[:2]
    assert main(["predict", "--model", str(model), *map(str, imgs), "--out",
                 str(tmp_path / "pred")]) == 0


def test_pseudo_inputs_replace_the_drawn_share_and_leave_the_target_clean(disc):
    # taps from stride 4: at 64 px a stride-32 cell sees the whole image, so no cell is clean
    data, fx = _small_set(disc, layers=("s4", "s8", "s16"))
    method = create_method("rd4ad", pseudo=1.0, layers=["s4", "s8", "s16"])
    head = method.build_head(fx.channels, fx.strides)
    idx = torch.arange(len(data))
    teachers = [data.all_features()[k][idx].clone() for k in head.layers]
    clean = [t.clone() for t in teachers]
    inputs = method.student_inputs(head, data, idx, teachers, np.random.default_rng(0))
    for t, c, i in zip(teachers, clean, inputs, strict=True):
        assert torch.equal(t, c)  # the distillation target is untouched
        assert i.shape == t.shape
        # every image (share 1.0) now carries a pseudo-defect somewhere in its features
        assert all(not torch.equal(i[n], c[n]) for n in range(len(data)))
    # where no defect was pasted the features are the clean ones: the inputs are real
    # teacher features of edited images, not noise
    assert any(torch.isclose(i, c, atol=1e-5).float().mean() > 0.5 for i, c in
               zip(inputs, clean, strict=True))
    half = create_method("rd4ad", pseudo=0.5, layers=["s4", "s8", "s16"]).student_inputs(
        head, data, idx, teachers, np.random.default_rng(0))
    changed = [not torch.equal(half[0][n], clean[0][n]) for n in range(len(data))]
    assert 0 < sum(changed) < len(data)
    off = create_method("rd4ad").student_inputs(head, data, idx, teachers,
                                                 np.random.default_rng(0))
    assert off is teachers


def test_pseudo_training_is_seeded_and_differs_from_plain_training(disc):
    data, fx = _small_set(disc, 4)
    losses = _loss_histories(data, fx, [dict(epochs=2, train_batch=2, pseudo=pseudo, seed=seed)
                                        for pseudo, seed in ((0.5, 0), (0.5, 0), (0.0, 0),
                                                             (0.5, 1))])
    torch.testing.assert_close(losses[0], losses[1])
    assert not torch.allclose(losses[0], losses[2])
    assert not torch.allclose(losses[0], losses[3])


# ------------------------------------------------------------ RD++ projection (``projection``)
def test_projection_loss_is_zero_for_a_perfect_projection_and_adds_its_terms_as_weighted():
    torch.manual_seed(0)
    clean = [torch.randn(2, 4, 6, 6), torch.randn(2, 8, 3, 3)]
    # projections of noisy and clean images agree, and the clean projection is the raw noisy
    # teacher feature up to scale: both terms vanish
    assert float(projection_loss([2 * c for c in clean], clean, clean)) == pytest.approx(
        0.0, abs=1e-6)
    # projection of the noisy image opposite to the clean one: reconstruction 2 per stage;
    # raw noisy features opposite to the clean projection: contrast 2 per stage
    flipped = [-c for c in clean]
    assert float(projection_loss(clean, flipped, clean)) == pytest.approx(
        0.01 * 4 / 1.11, abs=1e-5)
    assert float(projection_loss(flipped, clean, clean)) == pytest.approx(0.1 * 4 / 1.11,
                                                                          abs=1e-5)
    # contrast compares each sample's whole map (flattened), reconstruction each pixel
    noisy = [torch.randn_like(c) for c in clean]
    flat = sum(float((1 - torch.nn.functional.cosine_similarity(n.flatten(1), c.flatten(1))
                      ).mean()) for n, c in zip(noisy, clean, strict=True))
    assert float(projection_loss(noisy, clean, clean)) == pytest.approx(0.1 * flat / 1.11,
                                                                        abs=1e-5)


def test_projection_sits_between_teacher_and_bottleneck_and_keeps_the_shapes():
    method = create_method("rd4ad", projection=True)
    fx = FeatureExtractor("mobilenet_v2", method.layers, weights=None)
    head = method.build_head(fx.channels, fx.strides).eval()
    assert len(head.projection) == len(head.layers)
    plain = create_method("rd4ad").build_head(fx.channels, fx.strides)
    assert plain.projection is None
    # the bottleneck and decoder are the plain method's, initialised alike (same seed)
    for k, v in plain.state_dict().items():
        assert torch.equal(head.state_dict()[k], v), k
    with torch.no_grad():
        feats = fx(torch.randn(2, 3, 64, 64))
        teachers = [feats[k] for k in head.layers]
        projected = head.project(teachers)
        assert [p.shape for p in projected] == [t.shape for t in teachers]
        student = head.student(teachers)  # eval, no gradients: the folded copy
        torch.testing.assert_close(student, head.decode(projected), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(student[0], plain.eval().student(teachers)[0])
        head.projection[0].body[0].weight.mul_(-1.0)  # the student reads the projection
        assert not torch.allclose(head.student(teachers)[0], student[0])


def test_noisy_teachers_are_the_features_of_a_defective_copy_of_every_image(disc):
    data, fx = _small_set(disc, layers=("s4", "s8", "s16"))
    method = create_method("rd4ad", projection=True, layers=["s4", "s8", "s16"])
    head = method.build_head(fx.channels, fx.strides)
    idx = torch.arange(len(data))
    clean = [data.all_features()[k][idx] for k in head.layers]
    noisy = method.noisy_teachers(head, data, idx, np.random.default_rng(0))
    for n, c in zip(noisy, clean, strict=True):
        assert n.shape == c.shape
        assert all(not torch.equal(n[i], c[i]) for i in range(len(data)))
    again = method.noisy_teachers(head, data, idx, np.random.default_rng(0))
    assert all(torch.equal(a, b) for a, b in zip(noisy, again, strict=True))


def test_projection_training_moves_projection_and_student_with_their_own_rates(disc,
                                                                             monkeypatch):
    data, fx = _small_set(disc, 4)
    method = create_method("rd4ad", epochs=2, train_batch=2, projection=True)
    head = method.build_head(fx.channels, fx.strides)
    before = copy.deepcopy(head.state_dict())
    teacher = copy.deepcopy(fx.state_dict())
    rates = []
    real_adam = torch.optim.Adam

    def spy(groups, **kw):
        rates.extend((len(g["params"]), g.get("lr", kw["lr"])) for g in groups)
        return real_adam(groups, **kw)

    monkeypatch.setattr(torch.optim, "Adam", spy)
    method.fit_head(head, data)
    monkeypatch.undo()
    n_proj = len(list(head.projection.parameters()))
    assert rates == [(len(list(head.parameters())) - n_proj, method.lr), (n_proj, PROJ_LR)]
    after = head.state_dict()
    for part in ("projection.", "ocbe.", "decoder."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part))
    assert all(torch.equal(v, fx.state_dict()[k]) for k, v in teacher.items())  # frozen
    assert torch.all(torch.isfinite(head.history))
    # seeded: the same seed fits the same head, another seed another one
    twice = _loss_histories(data, fx, [dict(epochs=1, train_batch=2, projection=True, seed=seed)
                                       for seed in (0, 0, 1)])
    torch.testing.assert_close(twice[0], twice[1])
    assert not torch.allclose(twice[0], twice[2])


def test_projection_model_round_trips_and_older_files_load_without_one(disc, tmp_path):
    det = Detector(method="rd4ad", size=64, epochs=1, train_batch=4, projection=True).fit(
        [s.path for s in disc.train[:8]], progress=False)
    again = oddeye.load(det.save(tmp_path / "proj.oddeye"))
    assert again.method_.projection is True and again.model_.head.projection is not None
    paths = [s.path for s in disc.test[:4]]
    np.testing.assert_array_equal(again.predict(paths).scores, det.predict(paths).scores)
    plain = Detector(method="rd4ad", size=64, epochs=1, train_batch=4).fit(
        [s.path for s in disc.train[:8]], progress=False)
    old = oddeye.load(older_file(plain.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.projection"]))
    assert old.method_.projection is False and old.model_.head.projection is None
    np.testing.assert_array_equal(old.predict(paths).scores, plain.predict(paths).scores)


@pytest.mark.parametrize("params", [{"projection": "yes"}, {"projection": 1},
                                    {"projection": True, "embedding": "teacher"}])
def test_bad_projection_settings_are_refused(params):
    with pytest.raises(DataError, match="projection"):
        create_method("rd4ad", **params)


def test_projection_refuses_a_tap_of_one_cell_naming_it(disc):
    """At 32 px MobileNetV2's s32 tap is 1 x 1: instance norm cannot normalise one cell."""
    with pytest.raises(DataError, match="tap 's32' is 1 x 1"):
        Detector(method="rd4ad", size=32, epochs=1, train_batch=4, projection=True,
                 layers=["s8", "s16", "s32"]).fit([s.path for s in disc.train[:4]],
                                                  progress=False)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", True])
def test_bad_pseudo_share_is_refused(bad):
    with pytest.raises(DataError, match="pseudo"):
        create_method("rd4ad", pseudo=bad)


def test_precise_bn_sets_running_stats_to_the_training_set_statistics(disc):
    method = create_method("rd4ad", epochs=1, train_batch=6, precise_bn=False)
    data, fx = _small_set(disc, 6)
    head = method.build_head(fx.channels, fx.strides)
    method.fit_head(head, data)
    bn = head.decoder.stages[-1].blocks[0].body[1]  # a BatchNorm deep inside the student
    seen = []
    hook = bn.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0].detach()))
    method.recalibrate_bn(head, data)  # one batch of all 6 images: exact statistics
    hook.remove()
    assert len(seen) == 1 and not head.training
    inp = seen[0]
    torch.testing.assert_close(bn.running_mean, inp.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, inp.var(dim=(0, 2, 3), unbiased=True),
                               rtol=1e-3, atol=1e-5)
    assert bn.momentum == 0.1  # restored after the pass


def test_deeper_taps_option_builds_and_maps_at_stride_8():
    """MobileNetV2's s8, s16, s32 (validated, not the default for its training cost)."""
    method = create_method("rd4ad", layers=["s8", "s16", "s32"])
    assert create_method("rd4ad").layers == ("s4", "s8", "s16")
    fx = FeatureExtractor("mobilenet_v2", method.layers, weights=None)
    head = method.build_head(fx.channels, fx.strides).eval()
    with torch.inference_mode():
        assert head(fx(torch.randn(1, 3, 64, 64))).shape == (1, 8, 8)


def test_balanced_epochs_give_every_category_an_equal_share():
    """``balance`` (default): a unified fit's epoch draws each category about equally often,
    whatever its size; one category, or ``balance=False``, keeps the plain permutation."""
    from collections import Counter

    cats = ["big"] * 90 + ["small"] * 10
    data = TrainSet(images=torch.zeros(100, 3, 8, 8, dtype=torch.uint8), extractor=None,
                    normalize=None, categories=cats)
    gen = torch.Generator().manual_seed(0)
    balanced = create_method("rd4ad", balance=True).epoch_order(data, gen)
    assert len(balanced) == 100
    share = Counter(cats[i] for i in balanced.tolist())
    assert 35 <= share["small"] <= 65  # about half, not a tenth
    assert create_method("rd4ad").balance  # the default
    plain = create_method("rd4ad", balance=False).epoch_order(data,
                                                              torch.Generator().manual_seed(0))
    assert sorted(plain.tolist()) == list(range(100))
    one = TrainSet(images=data.images, extractor=None, normalize=None, categories=["a"] * 100)
    alone = create_method("rd4ad", balance=True).epoch_order(one, torch.Generator().manual_seed(0))
    assert sorted(alone.tolist()) == list(range(100))


def test_balance_leaves_a_one_category_fit_bit_identical(disc):
    """Per-category models train exactly as before the option: same batches, same precise-BN
    pass."""
    paths = [s.path for s in disc.train[:8]]
    fits = [Detector(method="rd4ad", size=64, epochs=2, train_batch=4, balance=b).fit(
        paths, progress=False) for b in (True, False)]
    a, b = (f.model_.head.state_dict() for f in fits)
    assert all(torch.equal(a[k], b[k]) for k in a if k != "history")  # history holds seconds
    torch.testing.assert_close(a["history"][:, 0], b["history"][:, 0])  # the losses


def test_balanced_unified_fit_runs_end_to_end(synth_root):
    cats = load_dataset(synth_root, ["grid", "disc"])
    paths = [s.path for s in cats[0].train[:10]] + [s.path for s in cats[1].train[:3]]
    names = ["grid"] * 10 + ["disc"] * 3
    det = Detector(method="rd4ad", size=64, epochs=1, train_batch=4, balance=True).fit(
        paths, categories=names, progress=False)
    assert det.method_.balance and np.all(np.isfinite(det.predict(paths[:2]).scores))


def test_model_file_from_before_balance_loads_as_unbalanced(fitted, disc, tmp_path):
    det, _ = fitted
    old = oddeye.load(older_file(det.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.balance"]))
    assert old.method_.balance is False
    paths = [s.path for s in disc.test[:2]]
    np.testing.assert_array_equal(old.predict(paths).scores, det.predict(paths).scores)


@pytest.mark.parametrize("value", ["false", 0, None])
def test_balance_must_be_a_bool(value):
    with pytest.raises(DataError, match="balance must be true or false"):
        create_method("rd4ad", balance=value)


# ------------------------------------------------------- the paper's ablation: `embedding`
@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet18"])
@pytest.mark.parametrize("embedding", ["ocbe", "oce", "teacher"])
def test_embedding_variants_rebuild_the_distilled_stages(backbone, embedding):
    method = create_method("rd4ad", backbone=backbone, embedding=embedding)
    fx = FeatureExtractor(backbone, method.layers, weights=None)
    head = method.build_head(fx.channels, fx.strides).eval()
    targets = ["s4", "s8", "s16"]
    assert head.layers == targets + (["s32"] if embedding == "teacher" else [])
    assert head.n_targets == 3
    with torch.inference_mode():
        feats = fx(torch.randn(2, 3, 64, 64))
        student = head.student([feats[k] for k in head.layers])
        raw = head(feats)
    assert [tuple(s.shape) for s in student] == [tuple(feats[k].shape) for k in targets]
    assert raw.shape == (2, 16, 16)
    fused = sum(p.numel() for p in head.ocbe.paths.parameters()) if embedding != "teacher" else 0
    assert (fused > 0) == (embedding == "ocbe")  # only the full OCBE fuses the shallow stages
    assert (len(list(head.ocbe.parameters())) == 0) == (embedding == "teacher")


def test_oce_embedding_ignores_the_shallow_stages():
    method = create_method("rd4ad", embedding="oce", decoder_blocks=[1, 1, 1], ocbe_blocks=1,
                           embed_dim=64)
    fx = FeatureExtractor("mobilenet_v2", method.layers, weights=None)
    head = method.build_head(fx.channels, fx.strides).eval()
    feats = fx(torch.randn(1, 3, 64, 64))
    with torch.inference_mode():
        z = head.ocbe([feats[k] for k in head.layers])
        z2 = head.ocbe([torch.randn_like(feats["s4"]), torch.randn_like(feats["s8"]),
                        feats["s16"]])
    torch.testing.assert_close(z, z2)


def test_teacher_embedding_trains_only_the_decoder_and_round_trips(disc, tmp_path):
    paths = [s.path for s in disc.train[:8]]
    det = Detector(method="rd4ad", size=64, epochs=3, train_batch=4, embedding="teacher").fit(
        paths, progress=False)
    head = det.model_.head
    assert det.method_.layers == ("s4", "s8", "s16", "s32")
    assert not any(k.startswith("ocbe.") for k in head.state_dict())
    hist = head.history
    assert float(hist[-1, 0]) < float(hist[0, 0])
    again = oddeye.load(det.save(tmp_path / "pre.oddeye"))
    assert again.method_.embedding == "teacher" and again.model_.head.layers == head.layers
    test = [s.path for s in disc.test[:3]]
    np.testing.assert_array_equal(again.predict(test).scores, det.predict(test).scores)


def test_embedding_default_and_older_files_are_the_full_ocbe(fitted, disc, tmp_path):
    det, _ = fitted
    assert det.method_.embedding == "ocbe"
    assert any(k.startswith("ocbe.paths.") for k in det.model_.head.state_dict())
    old = oddeye.load(older_file(det.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.embedding"]))
    assert old.method_.embedding == "ocbe"
    paths = [s.path for s in disc.test[:2]]
    np.testing.assert_array_equal(old.predict(paths).scores, det.predict(paths).scores)


@pytest.mark.parametrize("params,match", [
    ({"embedding": "pre"}, "embedding must be one of"),
    ({"embedding": "teacher", "layers": ["s4", "s16"]}, ">= 3 layers"),
    ({"embedding": "teacher", "layers": ["s4", "s8", "s32"]}, "twice the stride"),
    ({"embedding": "teacher", "embed_dim": 64}, "takes its width from tap 's32'"),
])
def test_bad_embedding_settings_are_refused(params, match):
    with pytest.raises(DataError, match=match):
        method = create_method("rd4ad", **params)
        fx = FeatureExtractor("mobilenet_v2", method.layers, weights=None)
        method.build_head(fx.channels, fx.strides)


# --------------------------------------------------------------------- stage weights
def test_stage_statistics_are_the_pixel_mean_and_sd_of_each_stage_over_all_batches():
    torch.manual_seed(0)
    batches = [[torch.rand(2, 4, 4) * 3, torch.rand(2, 4, 4)] for _ in range(3)]
    mean, sd = stage_statistics(iter(batches))
    for i in range(2):
        every = torch.cat([b[i].flatten() for b in batches]).double()
        assert float(mean[i]) == pytest.approx(float(every.mean()), rel=1e-6)
        assert float(sd[i]) == pytest.approx(float(every.std()), rel=1e-5)
    with pytest.raises(DataError, match="at least one image"):
        stage_statistics(iter([]))


def test_stage_offsets_and_scales_standardise_each_stage_and_neutral_ones_change_nothing():
    torch.manual_seed(0)
    t = [torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)]
    s = [torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)]
    plain = anomaly_map(t, s)
    assert torch.equal(anomaly_map(t, s, torch.zeros(2), torch.ones(2)), plain)
    d = stage_maps(t, s)
    off, scale = torch.tensor([0.5, 0.2]), torch.tensor([2.0, 10.0])
    torch.testing.assert_close(anomaly_map(t, s, off, scale),
                               (d[0] - 0.5) * 2.0 + (d[1] - 0.2) * 10.0)


def test_spread_weights_are_the_training_maps_statistics_and_round_trip(disc, tmp_path):
    goods = [s.path for s in disc.train[:8]]
    common = {"size": 64, "epochs": 2, "train_batch": 4}
    equal = Detector(method="rd4ad", stage_weights="equal", **common).fit(goods, progress=False)
    spread = Detector(method="rd4ad", **common).fit(goods, progress=False)  # the default
    head = spread.model_.head
    assert torch.equal(equal.model_.head.stage_offset, torch.zeros(3))
    assert torch.equal(equal.model_.head.stage_scale, torch.ones(3))
    # the same training (the statistics come after it): the same student and the same stages
    for (k, a), b in zip(equal.model_.head.state_dict().items(), head.state_dict().values(),
                         strict=True):
        if k == "history":  # (loss, seconds) per epoch: the losses, not the clock
            a, b = a[:, 0], b[:, 0]
        if not k.startswith("stage_"):
            torch.testing.assert_close(a, b, msg=k)
    # the statistics are those of the training images' per-stage maps under the final weights
    x = to_batch(load_resized(goods, 64))
    with torch.inference_mode():
        feats = spread.model_.extractor(spread.model_.normalize(x))
        teachers = [feats[k] for k in head.layers]
        maps = stage_maps(head.targets(teachers), head.student(teachers))
    mean, sd = stage_statistics(iter([maps]))
    torch.testing.assert_close(head.stage_offset, mean, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(head.stage_scale, 1.0 / sd, rtol=1e-4, atol=1e-6)
    # good training pixels average ~0 per stage under the weighting, so ~0 summed
    with torch.inference_mode():
        assert abs(float(head(feats).mean())) < 1e-3
    paths = [s.path for s in disc.test[:4]]
    again = oddeye.load(spread.save(tmp_path / "spread.oddeye"))
    assert spread.method_.stage_weights == again.method_.stage_weights == "spread"
    np.testing.assert_array_equal(again.predict(paths).scores, spread.predict(paths).scores)
    # a file from before the option: no parameter, no buffers -> the paper's plain sum
    old = oddeye.load(older_file(equal.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.stage_weights"],
                                 tensors=["head.stage_offset", "head.stage_scale"]))
    assert old.method_.stage_weights == "equal"
    np.testing.assert_array_equal(old.predict(paths).scores, equal.predict(paths).scores)


@pytest.mark.parametrize("bad", ["z", "", None, True])
def test_bad_stage_weights_are_refused(bad):
    with pytest.raises(DataError, match="stage_weights"):
        create_method("rd4ad", stage_weights=bad)


# ------------------------------------------------------------------ weight averaging
def test_averaging_start_counts_the_tail_share_of_the_steps():
    assert [averaging_start(100, a) for a in (0.0, 0.5, 0.75, 0.999)] == [1, 51, 76, 100]
    assert averaging_start(3, 0.9) == 3  # at least the last step counts


def test_tail_average_is_the_plain_mean_of_the_updates():
    w = torch.zeros(3)
    avg = TailAverage([w])
    for v in (1.0, 2.0, 6.0):
        w.fill_(v)
        avg.update()
    avg.apply()
    torch.testing.assert_close(w, torch.full((3,), 3.0))


def test_averaged_fit_keeps_the_mean_of_the_tail_weights(disc):
    """Same seed, same trajectory: the averaged fit's weights are the mean of the plain fit's
    weights after each counted step (3 epochs x 2 steps, from step 4 on), BN then recomputed."""
    data, fx = _small_set(disc, 8)
    plain = create_method("rd4ad", epochs=3, train_batch=4, precise_bn=True)
    snaps: list[list[torch.Tensor]] = []
    head = plain.build_head(fx.channels, fx.strides)
    params = list(head.parameters())
    hook = register_optimizer_step_post_hook(
        lambda *_: snaps.append([p.detach().clone() for p in params]))
    try:
        plain.fit_head(head, data)
    finally:
        hook.remove()
    assert len(snaps) == 6
    averaged = create_method("rd4ad", epochs=3, train_batch=4, average_from=0.5)
    avg_head = averaged.build_head(fx.channels, fx.strides)
    averaged.fit_head(avg_head, data)
    torch.testing.assert_close(avg_head.history[:, 0], head.history[:, 0])  # same trajectory
    moved = 0
    for i, p in enumerate(avg_head.parameters()):
        want = torch.stack([s[i] for s in snaps[3:]]).mean(0)
        torch.testing.assert_close(p.detach(), want, rtol=1e-5, atol=1e-6)
        moved += not torch.allclose(p.detach(), snaps[-1][i])
    assert moved  # the average is not simply the last step's weights
    # BatchNorm statistics belong to the averaged weights: a fresh precise-BN pass changes none
    bns = [m for m in avg_head.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bns]
    averaged.recalibrate_bn(avg_head, data)
    for b, m in zip(before, bns, strict=True):
        torch.testing.assert_close(m.running_mean, b)


def test_averaging_is_off_by_default_and_older_files_load_without_it(fitted, disc, tmp_path):
    det, _ = fitted
    assert det.method_.average_from is None
    paths = [s.path for s in disc.test[:3]]
    old = oddeye.load(older_file(det.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.average_from"]))
    assert old.method_.average_from is None
    np.testing.assert_array_equal(old.predict(paths).scores, det.predict(paths).scores)


@pytest.mark.parametrize("params", [{"average_from": 1.0}, {"average_from": -0.1},
                                    {"average_from": "0.5"},
                                    {"average_from": 0.5, "precise_bn": False}])
def test_bad_averaging_settings_are_refused(params):
    with pytest.raises(DataError, match="average_from"):
        create_method("rd4ad", **params)


# -------------------------------------------------------------------- expanded targets
def test_expanded_targets_rebuild_the_expansions_from_the_stride_taps_alone():
    method = create_method("rd4ad", expanded_targets=True)
    assert method.layers == ("s4", "s8", "s16", "s4x", "s8x", "s16x")
    fx = FeatureExtractor("mobilenet_v2", method.layers, weights=None)
    head = method.build_head(fx.channels, fx.strides).eval()
    assert head.layers == ["s4", "s8", "s16", "s4x", "s8x", "s16x"]
    torch.manual_seed(0)
    feats = {k: torch.randn(2, fx.channels[k], 64 // fx.strides[k], 64 // fx.strides[k])
             for k in fx.layers}
    teachers = [feats[k] for k in head.layers]
    with torch.no_grad():
        student = head.student(teachers)
        # the bottleneck reads the stride taps only: other targets leave the student unchanged
        other = head.student(teachers[:3] + [torch.randn_like(t) for t in teachers[3:]])
        moved = head.student([torch.randn_like(t) for t in teachers[:3]] + teachers[3:])
    assert [tuple(s.shape) for s in student] == [tuple(t.shape) for t in teachers[3:]]
    assert [s.shape[1] for s in student] == [144, 192, 576]
    for a, b, c in zip(student, other, moved, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert not torch.allclose(a, c)
    assert head.targets(teachers) == teachers[3:]
    assert head(feats).shape == (2, 16, 16)
    plain = create_method("rd4ad")  # the default: no output convs, the taps are the targets
    plain_head = plain.build_head(*_shapes(plain.layers))
    assert plain_head.decoder.outputs is None and plain_head.targets(teachers[:3]) == teachers[:3]


def _shapes(layers):
    fx = FeatureExtractor("mobilenet_v2", layers, weights=None)
    return fx.channels, fx.strides


def test_expanded_targets_train_round_trip_and_older_files_load_without_them(fitted, disc,
                                                                              tmp_path):
    paths = [s.path for s in disc.train[:8]]
    det = Detector(method="rd4ad", size=64, epochs=3, train_batch=4,
                   expanded_targets=True).fit(paths, progress=False)
    hist = det.model_.head.history
    assert float(hist[-1, 0]) < float(hist[0, 0])
    assert any(k.startswith("decoder.outputs.") for k in det.model_.head.state_dict())
    again = oddeye.load(det.save(tmp_path / "exp.oddeye"))
    assert again.method_.expanded_targets is True
    test = [s.path for s in disc.test[:3]]
    np.testing.assert_array_equal(again.predict(test).scores, det.predict(test).scores)
    plain, _ = fitted
    assert plain.method_.expanded_targets is False
    old = oddeye.load(older_file(plain.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.expanded_targets"]))
    assert old.method_.expanded_targets is False
    np.testing.assert_array_equal(old.predict(test).scores, plain.predict(test).scores)


@pytest.mark.parametrize("params,match", [
    ({"expanded_targets": "yes"}, "expanded_targets"),
    ({"expanded_targets": True, "projection": True}, "expanded_targets works with"),
    ({"expanded_targets": True, "embedding": "teacher"}, "expanded_targets works with"),
    ({"expanded_targets": True, "layers": ["s4", "s8", "s16", "s8x"]}, r"add \['s4x', 's16x'\]"),
])
def test_bad_expanded_target_settings_are_refused(params, match):
    with pytest.raises(DataError, match=match):
        method = create_method("rd4ad", **params)
        method.build_head(*_shapes(method.layers))


def test_a_wide_teacher_gets_bottleneck_blocks_in_every_stage_and_old_files_keep_theirs():
    """The authors' WideResNet50-2 decoder is bottlenecks throughout; ``block="auto"`` chose
    per stage (basic blocks for the 256-channel stage) before ``uniform_blocks``, which files
    from then load with. A MobileNetV2-sized teacher keeps basic blocks."""
    from oddeye.methods.rd4ad import RD4AD

    wide = ({"s4": 256, "s8": 512, "s16": 1024}, {"s4": 4, "s8": 8, "s16": 16})

    def kinds(method, shapes):
        head = method.build_head(*shapes)
        return [len(st.blocks[0].body) == 8 for st in head.decoder.stages], \
            [len(st.blocks) for st in head.decoder.stages]

    assert kinds(RD4AD(backbone="wide_resnet50_2"), wide) == ([True] * 3, [3, 4, 6])
    assert kinds(RD4AD(backbone="wide_resnet50_2", uniform_blocks=False), wide)[0] == \
        [True, True, False]
    assert RD4AD.legacy_defaults["uniform_blocks"] is False
    small = ({"s8": 32, "s16": 96, "s32": 320}, {"s8": 8, "s16": 16, "s32": 32})
    assert kinds(RD4AD(layers=["s8", "s16", "s32"]), small)[0] == [False] * 3
