"""The semi-supervised image head: anomalies-only loss, BN centring, labels required, detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oddeye.api import Detector
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.errors import DataError
from oddeye.methods import create_method
from oddeye.preprocess import load_resized, resize_mask, to_batch
from tests.modelfiles import older_file


def test_anoonly_loss_has_no_term_on_normal_patches():
    m = create_method("anoonly-head", anoonly=True)
    s = torch.randn(64, requires_grad=True)
    is_anom = torch.zeros(64, dtype=torch.bool)
    is_anom[:4] = True
    m.loss(s, is_anom).backward()
    assert torch.all(s.grad[4:] == 0) and torch.any(s.grad[:4] != 0)
    base = create_method("anoonly-head", anoonly=False)
    s2 = s.detach().clone().requires_grad_(True)
    base.loss(s2, is_anom).backward()
    assert torch.any(s2.grad[4:] != 0)  # the base (DevNet-style) loss does touch normal patches


def test_needs_labelled_defects(synth_root):
    cat = load_dataset(synth_root, ["grid"])[0]
    with pytest.raises(DataError, match="labelled defective"):
        Detector(method="anoonly-head", size=128).fit(
            [s.path for s in cat.train[:6]], labels=[0] * 6, progress=False)


def test_few_labelled_defects_are_learned(synth_root):
    cat = load_dataset(synth_root, ["disc"])[0]
    defects = [s for s in cat.test if s.label == 1]
    labelled, held_out = defects[:3], defects[3:]
    paths = [s.path for s in cat.train] + [s.path for s in labelled]
    labels = [0] * len(cat.train) + [1] * len(labelled)
    masks = [np.zeros((128, 128), np.uint8)] * len(cat.train) + [
        resize_mask(load_sample_mask(s, (128, 128)), 128) for s in labelled]
    det = Detector(method="anoonly-head", size=128, steps=60).fit(
        paths, labels=labels, masks=masks, progress=False)
    goods = [s.path for s in cat.test if s.label == 0]
    s_good = det.decision_function(goods)
    s_bad = det.decision_function([s.path for s in held_out])
    assert s_bad.mean() > s_good.mean()
    # BatchNorm without affine and a bias-free score layer: normal scores stay near 0
    head = det.model_.head
    assert head.score.bias is None and not head.bn.affine


@pytest.mark.parametrize("prior", [True, False])
def test_distance_prior_adds_the_learned_term_to_the_standardised_distance(prior):
    m = create_method("anoonly-head", layers=["a"], distance_prior=prior)
    head = m.build_head({"a": 4}, {"a": 8})
    head.eval()
    x = torch.randn(2, 5, 3, 3)  # 4 feature channels + the standardised distance
    with torch.no_grad():
        head.score.weight.zero_()  # learned term 0: the score is the prior alone (or 0)
        want = x[:, -1] if prior else torch.zeros(2, 3, 3)
        torch.testing.assert_close(head.scorer(x), want)


@pytest.mark.parametrize(("grid", "cosine"), [("first", False), ("last", False),
                                              ("first", True)])
def test_prior_is_patchcore_exactly(synth_root, grid, cosine):
    """With the learned term at 0 the head is PatchCore up to an affine map: same bank, same
    embedding (patch grid and unit-length stages included), raw-map image score, so images
    and pixels rank identically."""
    cat = load_dataset(synth_root, ["disc"])[0]
    goods = [s.path for s in cat.train]
    labelled = [s for s in cat.test if s.label == 1][:2]
    masks = [np.zeros((128, 128), np.uint8)] * len(goods) + [
        resize_mask(load_sample_mask(s, (128, 128)), 128) for s in labelled]
    head_det = Detector(method="anoonly-head", size=128, steps=5, grid=grid,
                        cosine=cosine).fit(
        goods + [s.path for s in labelled], labels=[0] * len(goods) + [1] * 2, masks=masks,
        progress=False)
    pc = Detector(method="patchcore", size=128, holdout=0, grid=grid, cosine=cosine).fit(
        goods, progress=False)
    head = head_det.model_.head
    assert head.grid == grid and head.frame == (1 if grid == "last" else 2)
    assert head.cosine == cosine
    assert torch.equal(head.bank, pc.model_.head.bank)
    with torch.no_grad():
        head.score.weight.zero_()
    test = [s.path for s in cat.test]
    a, b = head_det.predict(test), pc.predict(test)
    mu, sd = head.dist_stats.tolist()
    np.testing.assert_allclose(a.scores, (b.scores - mu) / sd, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.maps, (b.maps - mu) / sd, rtol=1e-4, atol=1e-3)


def test_prior_takes_patchcores_position_choice_from_the_good_images(tmp_path):
    """``position="auto"`` runs PatchCore's choice on the good images only: the same weight,
    table and bank as PatchCore fitted on those images; the learned term's features stay
    position-free; the file keeps the choice and ``fit_choices`` names it with the gate."""
    import oddeye

    from .test_patchcore_bank import _squares

    goods = _squares(44)
    moved = [np.ascontiguousarray(g[::-1, ::-1]) for g in _squares(2, seed=1)]  # square moved
    masks = [np.zeros((64, 64), np.uint8)] * 44 + [np.zeros((64, 64), np.uint8)] * 2
    for m in masks[44:]:
        m[36:60, 36:60] = 1
    det = Detector(method="anoonly-head", size=64, steps=20).fit(
        goods + moved, labels=[0] * 44 + [1] * 2, masks=masks, progress=False)
    pc = Detector(method="patchcore", size=64, holdout=0).fit(goods, progress=False)
    h, p = det.model_.head, pc.model_.head
    assert h.position_table.shape[0] == 3 and torch.equal(h.position_table, p.position_table)
    assert float(h.position) == float(p.position)
    assert torch.equal(h.bank, p.bank) and h.bank.shape[1] == h.hidden.in_channels - 1 + 2
    note = det.fit_choices_
    assert note.startswith(f"position weight {float(h.position):g}, chosen on pseudo-defects")
    assert "gate" in note
    again = oddeye.load(det.save(tmp_path / "head.oddeye"))
    assert again.fit_choices_ == note
    np.testing.assert_array_equal(again.predict(goods[:3]).scores, det.predict(goods[:3]).scores)
    fixed = create_method("anoonly-head", layers=["a"], position=0.0).build_head({"a": 4},
                                                                                  {"a": 8})
    assert not fixed.has_position and fixed.bank.shape[1] == 4  # 0: no columns, as old files


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "Auto"])
def test_bad_position_is_a_clear_error(bad):
    m = create_method("anoonly-head", layers=["a"], position=bad)
    with pytest.raises(DataError, match="position must be 'auto' or a finite number"):
        m.build_head({"a": 4}, {"a": 8})


@pytest.fixture(scope="module")
def disc_labelled(synth_root):
    cat = load_dataset(synth_root, ["disc"])[0]
    goods = [s.path for s in cat.train]
    labelled = [s for s in cat.test if s.label == 1][:2]
    masks = [np.zeros((128, 128), np.uint8)] * len(goods) + [
        resize_mask(load_sample_mask(s, (128, 128)), 128) for s in labelled]
    fit = dict(labels=[0] * len(goods) + [1] * 2, masks=masks, progress=False)
    return cat, goods + [s.path for s in labelled], fit


def test_gate_adds_only_the_learned_term_above_its_floor(disc_labelled):
    """With the gate on a patch scores prior + max(0, learned - floor); off, prior + learned."""
    cat, paths, fit = disc_labelled
    x = to_batch(load_resized([s.path for s in cat.test[:4]], 128))
    for gate, on in (("max", 1.0), ("off", 0.0)):
        det = Detector(method="anoonly-head", size=128, steps=20, gate=gate).fit(paths, **fit)
        h = det.model_.head
        assert float(h.gate_on) == on
        with torch.no_grad():
            feats = det.model_.extractor(det.model_.normalize(x))
            emb = h.embed(feats)
            prior = h._distance(emb, h.bank, h.bank_sq)[:, 0]
            learned = h.learned(h._inputs_of(emb))
            want = prior + ((learned - h.learned_floor).clamp_min(0) if on else learned)
            torch.testing.assert_close(h(feats), want)
            p, a = h.terms(feats)  # the two terms a diagnosis reads, summing to the map
            torch.testing.assert_close(p, prior)
            torch.testing.assert_close(p + a, h(feats))
        if on:  # the maximum over good patches of a term centred near 0 on them
            assert float(h.gate_quantile) == 1.0 and float(h.learned_floor) > 0


def test_gate_cv_picks_a_candidate_by_leaving_labelled_defects_out(disc_labelled):
    from oddeye.methods.anoonly_head import GATE_QUANTILES

    _, paths, fit = disc_labelled
    a = Detector(method="anoonly-head", size=128, steps=20).fit(paths, **fit)
    cv = a.method_.gate_cv_
    assert list(cv) == [str(q) for q in GATE_QUANTILES]
    assert all(0.0 <= v <= 1.0 for v in cv.values())
    best = max(cv.values())
    chosen = next(q for q in GATE_QUANTILES if cv[str(q)] == best)  # ties: the safer gate
    h = a.model_.head
    if chosen is None:
        assert float(h.gate_on) == 0 and torch.isnan(h.gate_quantile)
    else:
        assert float(h.gate_on) == 1 and float(h.gate_quantile) == chosen
    b = Detector(method="anoonly-head", size=128, steps=20).fit(paths, **fit)
    sa, sb = h.state_dict(), b.model_.head.state_dict()
    for k in sa:  # one seed, one model
        torch.testing.assert_close(sa[k], sb[k], equal_nan=True)
    # one labelled defect leaves nothing to cross-validate with: the safest gate
    one = dict(fit, labels=fit["labels"][:-1], masks=fit["masks"][:-1])
    c = Detector(method="anoonly-head", size=128, steps=5).fit(paths[:-1], **one)
    assert c.method_.gate_cv_ == {} and float(c.model_.head.gate_quantile) == 1.0
    with pytest.raises(DataError, match="gate must be one of"):
        Detector(method="anoonly-head", size=128, steps=5, gate="on").fit(paths, **fit)


def test_file_from_before_the_gate_loads_ungated_and_scores_the_same(disc_labelled, tmp_path):

    import oddeye

    cat, paths, fit = disc_labelled
    plain = Detector(method="anoonly-head", size=128, steps=5, gate="off").fit(paths, **fit)
    old = oddeye.load(older_file(
        plain.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye", drop=["method_params.gate"],
        tensors=[f"head.{k}" for k in ("gate_on", "learned_floor", "gate_quantile")]))
    assert old.method_.gate == "off" and float(old.model_.head.gate_on) == 0
    test = [s.path for s in cat.test]
    np.testing.assert_array_equal(old.predict(test).scores, plain.predict(test).scores)


def test_file_from_before_the_grid_loads_with_the_finest_and_a_bad_grid_is_refused(
        disc_labelled, tmp_path):
    import oddeye

    cat, paths, fit = disc_labelled
    plain = Detector(method="anoonly-head", size=128, steps=5, gate="off").fit(paths, **fit)
    old = oddeye.load(older_file(plain.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.grid"]))
    assert old.method_.grid == "first" and old.model_.head.grid == "first"
    test = [s.path for s in cat.test]
    np.testing.assert_array_equal(old.predict(test).scores, plain.predict(test).scores)
    with pytest.raises(DataError, match="grid must be 'first', 'last' or one of the layers"):
        Detector(method="anoonly-head", size=128, steps=5, grid="s4").fit(paths, **fit)


def test_validation_images_set_a_labelled_fits_threshold(disc_labelled):
    """A labelled fit holds no image out; given good validation images, its threshold comes
    from them (mean + 3 std of their scores), not from the good training images it fitted."""
    cat, paths, fit = disc_labelled
    val = [s.path for s in cat.test if s.label == 0][:4]
    plain = Detector(method="anoonly-head", size=128, steps=5, gate="max").fit(paths, **fit)
    assert plain.threshold_info_["source"].endswith("good training images (biased low)")
    det = Detector(method="anoonly-head", size=128, steps=5, gate="max").fit(
        paths, validation=val, **fit)
    assert det.threshold_info_["source"] == "4 validation images"
    s = det.decision_function(val)
    assert det.threshold_ == pytest.approx(s.mean() + 3 * s.std(), rel=1e-5)
    np.testing.assert_array_equal(det.decision_function(val), plain.decision_function(val))
