"""AUROC, AP, F1-max and AUPRO against scikit-learn and a slow threshold-sweep reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from oddeye.api import f1_optimal_threshold
from oddeye.errors import DataError
from oddeye.metrics import (
    aupro,
    auroc,
    average_precision,
    f1_max,
    precision_recall_f1,
    pro_curve,
)
from tests.metrics.reference import blob_data, sklearn_f1max, slow_aupro, slow_pro_points


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with both classes and scores that are continuous, tied, or nearly constant."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    kind = seed % 4
    if kind == 0:
        scores = rng.normal(size=n) + labels * rng.uniform(0, 2)
    elif kind == 1:  # heavy ties
        scores = rng.integers(0, int(rng.integers(1, 6)), n).astype(np.float64)
    elif kind == 2:  # float32 with ties and infinities
        scores = np.round(rng.normal(size=n) * 3).astype(np.float32)
        scores[rng.random(n) < 0.05] = np.inf
        scores[rng.random(n) < 0.05] = -np.inf
    else:  # integer scores, mostly one value
        scores = np.where(rng.random(n) < 0.9, 7, rng.integers(0, 10, n))
    return scores, labels


@pytest.mark.parametrize("seed", range(40))
def test_matches_sklearn(seed):
    scores, labels = _random_case(seed)
    finite = np.nan_to_num(scores.astype(np.float64), posinf=1e300, neginf=-1e300)
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, finite), abs=1e-12)
    assert average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels, finite), abs=1e-12)
    assert f1_max(scores, labels) == pytest.approx(sklearn_f1max(labels, finite), abs=1e-12)


def test_constant_scores_are_one_threshold():
    labels = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    scores = np.full(labels.size, 3.25)
    assert auroc(scores, labels) == 0.5
    assert average_precision(scores, labels) == pytest.approx(3 / 8)
    assert f1_max(scores, labels) == pytest.approx(2 * 3 / (8 + 3))


def test_perfect_and_inverted_ranking():
    labels = np.array([0, 0, 1, 1])
    assert auroc([0.1, 0.2, 0.3, 0.4], labels) == 1.0
    assert auroc([0.4, 0.3, 0.2, 0.1], labels) == 0.0
    assert average_precision([0.1, 0.2, 0.3, 0.4], labels) == 1.0
    assert f1_max([0.1, 0.2, 0.3, 0.4], labels) == 1.0


def test_raw_scores_are_not_transformed():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 50)
    scores = rng.normal(size=50)
    # a huge offset and negative values must give the same ranking metrics
    assert auroc(scores * 1e6 - 1e9, labels) == pytest.approx(auroc(scores, labels), abs=1e-12)
    assert auroc(-scores, labels) == pytest.approx(1 - auroc(scores, labels), abs=1e-12)


@pytest.mark.parametrize("fn", [auroc, average_precision, f1_max])
@pytest.mark.parametrize("label", [0, 1])
def test_single_class_is_nan_with_warning(fn, label):
    with pytest.warns(UserWarning, match="both classes"):
        assert math.isnan(fn([0.1, 0.5, 0.3], [label] * 3))


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    scores, labels = _random_case(0)
    value = auroc(torch.tensor(scores), torch.tensor(labels))
    assert value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([0.1, 0.2], [0, 1, 1], "entries"),
        ([0.1, np.nan], [0, 1], "NaN"),
        ([0.1, 0.2], [0, 2], "only 0 and 1"),
        ([], [], "empty"),
        (["a", "b"], [0, 1], "numbers"),
    ],
)
def test_bad_inputs(scores, labels, match):
    with pytest.raises(DataError, match=match):
        auroc(scores, labels)


@pytest.mark.parametrize("quantise", [None, 2, 8])
@pytest.mark.parametrize("limit", [0.3, 0.02, 1.0])
def test_aupro_matches_slow_reference(quantise, limit):
    rng = np.random.default_rng(100 + (quantise or 0))
    _, _, maps, masks = blob_data(rng, n=7, size=14, quantise=quantise)
    assert masks.any() and (~masks.astype(bool)).reshape(7, -1).all(axis=1).any()  # both kinds
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(
        slow_aupro(maps, masks, limit), abs=1e-12)


def test_aupro_counts_every_region_equally():
    # two regions: a large one fully detected, a one-pixel one missed -> PRO is 0.5 at low FPR
    maps = np.zeros((1, 10, 10))
    masks = np.zeros((1, 10, 10), dtype=np.uint8)
    masks[0, :4, :4] = 1
    masks[0, 8, 8] = 1
    maps[0, :4, :4] = 5.0
    maps[0, 8, 8] = -1.0  # below every normal pixel
    # the curve is at 0.5 from FPR 0 to 1 then jumps to 1: AUPRO(0.3) = 0.5
    assert aupro(maps, masks) == pytest.approx(0.5)
    # diagonal neighbours join one region (8-connectivity): now one region, half detected
    masks2 = np.zeros((1, 10, 10), dtype=np.uint8)
    masks2[0, 2, 2] = masks2[0, 3, 3] = 1
    maps2 = np.zeros((1, 10, 10))
    maps2[0, 2, 2], maps2[0, 3, 3] = 5.0, -1.0
    assert aupro(maps2, masks2) == pytest.approx(0.5)
    fpr, pro, _ = pro_curve(maps2, masks2)
    assert pro[1] == pytest.approx(0.5)


def test_pro_curve_vertices_lie_on_the_swept_curve():
    rng = np.random.default_rng(7)
    _, _, maps, masks = blob_data(rng, n=5, size=12, quantise=4)
    fpr, pro, thr = pro_curve(maps, masks)
    ref_fpr, ref_pro = slow_pro_points(maps, masks)
    ref = set(zip(np.round(ref_fpr, 12), np.round(ref_pro, 12), strict=True))
    assert {(round(a, 12), round(b, 12)) for a, b in zip(fpr, pro, strict=True)} <= ref
    assert fpr[0] == pro[0] == 0 and thr[0] == np.inf
    assert fpr[-1] == pytest.approx(1) and pro[-1] == pytest.approx(1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-15)
    assert np.all(np.diff(thr) < 0)
    # every vertex is the curve at its own threshold
    for i in rng.choice(np.arange(1, fpr.size), 5, replace=False):
        above = maps >= thr[i]
        assert fpr[i] == pytest.approx((above & (masks == 0)).sum() / (masks == 0).sum())


def test_aupro_without_regions_or_normal_pixels():
    maps = np.random.default_rng(0).normal(size=(2, 5, 5))
    with pytest.warns(UserWarning, match="no defect regions"):
        assert math.isnan(aupro(maps, np.zeros((2, 5, 5))))
    with pytest.warns(UserWarning, match="no normal pixels"):
        assert math.isnan(aupro(maps, np.ones((2, 5, 5))))
    with pytest.raises(DataError, match="no defect regions"):
        pro_curve(maps, np.zeros((2, 5, 5)))
    with pytest.raises(DataError, match="fpr_limit"):
        aupro(maps, np.zeros((2, 5, 5)), fpr_limit=0)


@pytest.mark.parametrize("quantise", [None, 1, 3])
def test_partial_sort_aupro_equals_full_curve(quantise):
    # aupro() sorts only the normal scores near the top; the full table must give the same area
    from oddeye.metrics import curves
    from oddeye.metrics.functional import pixel_table

    _, _, maps, masks = blob_data(np.random.default_rng(40 + (quantise or 0)), n=8, size=24,
                                  quantise=quantise)
    full = pixel_table(maps, masks.astype(bool))
    for limit in (1e-4, 0.01, 0.1, 0.3, 0.5, 0.999, 1.0):
        assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(
            curves.table_aupro(full, limit), abs=1e-12), limit


def test_precision_recall_f1_counts():
    s = np.array([0.1, 0.4, 0.6, 0.9])
    y = np.array([0, 1, 0, 1])
    assert precision_recall_f1(s, y, 0.5) == {"f1": 0.5, "precision": 0.5, "recall": 0.5}
    assert precision_recall_f1(s, y, 1.0) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


@pytest.mark.parametrize("seed", range(6))
def test_f1_at_the_f1_optimal_threshold_is_f1_max(seed):
    scores, labels = _random_case(seed)
    at = precision_recall_f1(scores, labels, f1_optimal_threshold(scores, labels))
    assert at["f1"] == pytest.approx(f1_max(scores, labels))


@pytest.mark.parametrize("scale", [1.0, 1e5, 1e12])
def test_f1_optimal_threshold_flags_every_image_at_any_score_scale(scale):
    """When F1 is best with every image flagged, the lowest score must lie above the
    threshold; a fixed offset below it (1e-12) vanished in the rounding of scores above ~1e4."""
    scores, labels = np.array([1.0, 2.0, 3.0]) * scale, np.array([1, 0, 1])
    t = f1_optimal_threshold(scores, labels)
    assert t < scores.min()
    assert precision_recall_f1(scores, labels, t)["f1"] == pytest.approx(f1_max(scores, labels))
    close = np.array([1.0, np.nextafter(1.0, 2.0)]) * scale  # adjacent floats: no midpoint
    t = f1_optimal_threshold(close, np.array([0, 1]))
    assert close[0] <= t < close[1]


def test_precision_recall_f1_refuses_mismatched_inputs():
    with pytest.raises(DataError, match="3 entries but labels has 2"):
        precision_recall_f1([0.1, 0.2, 0.3], [0, 1], 0.2)

