"""evaluate(), the streaming MetricAccumulator, binned mode and its error bounds, input checks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from oddeye.errors import DataError
from oddeye.metrics import METRIC_KEYS, MetricAccumulator, aupro, evaluate
from oddeye.metrics.histogram import PowerOfTwoHistogram
from tests.metrics.reference import blob_data, sklearn_f1max, slow_aupro


@pytest.fixture(scope="module")
def data():
    return blob_data(np.random.default_rng(11), n=10, size=16)


@pytest.fixture(scope="module")
def tied_data():
    return blob_data(np.random.default_rng(12), n=10, size=16, quantise=3)


def _check_against_references(res, scores, labels, maps, masks):
    flat_y, flat_s = masks.ravel(), maps.ravel()
    assert res["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert res["image_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert res["image_f1max"] == pytest.approx(sklearn_f1max(labels, scores), abs=1e-12)
    assert res["pixel_auroc"] == pytest.approx(roc_auc_score(flat_y, flat_s), abs=1e-12)
    assert res["pixel_ap"] == pytest.approx(average_precision_score(flat_y, flat_s), abs=1e-12)
    assert res["pixel_f1max"] == pytest.approx(sklearn_f1max(flat_y, flat_s), abs=1e-12)
    assert res["pixel_aupro"] == pytest.approx(slow_aupro(maps, masks), abs=1e-12)


@pytest.mark.parametrize("which", ["data", "tied_data"])
def test_evaluate_exact_matches_references(which, request):
    scores, labels, maps, masks = request.getfixturevalue(which)
    res = evaluate(scores, labels, maps, masks)
    assert tuple(res) == METRIC_KEYS
    assert res["n_images"] == len(scores) and isinstance(res["n_images"], int)
    assert all(isinstance(res[k], float) for k in METRIC_KEYS if k != "n_images")
    _check_against_references(res, scores, labels, maps, masks)


def test_without_maps_pixel_metrics_are_nan(data):
    scores, labels, _, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: NaN pixel keys are the documented default
        res = evaluate(scores, labels)
    assert res["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert all(math.isnan(res[k]) for k in ("pixel_auroc", "pixel_ap", "pixel_f1max",
                                            "pixel_aupro"))


def test_all_good_images_give_nan_and_warnings(data):
    scores, _, maps, _ = data
    n = len(scores)
    with pytest.warns(UserWarning) as record:
        res = evaluate(scores, np.zeros(n), maps, np.zeros(maps.shape))
    messages = " ".join(str(w.message) for w in record)
    assert "image-level" in messages and "pixel-level" in messages
    assert all(math.isnan(v) for k, v in res.items() if k != "n_images")


def test_all_defective_images_nan_image_metrics_only(data):
    scores, _, maps, masks = data
    with pytest.warns(UserWarning, match="image-level metrics are NaN: all images are defective"):
        res = evaluate(scores, np.ones(len(scores)), maps, masks)
    assert math.isnan(res["image_auroc"]) and math.isnan(res["image_f1max"])
    assert res["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


def test_streaming_exact_equals_one_shot(data):
    scores, labels, maps, masks = data
    one = evaluate(scores, labels, maps, masks)
    acc = MetricAccumulator()
    for lo, hi in [(0, 1), (1, 5), (5, 5), (5, 10)]:  # includes an empty batch
        acc.update(scores[lo:hi], labels[lo:hi], maps[lo:hi], masks[lo:hi])
    streamed = acc.compute()
    assert streamed["n_images"] == one["n_images"]
    for key in METRIC_KEYS:
        assert streamed[key] == pytest.approx(one[key], abs=1e-12), key
    assert acc.error_bounds() == dict.fromkeys(("pixel_auroc", "pixel_ap", "pixel_f1max",
                                                "pixel_aupro"), 0.0)


def test_streaming_binned_equals_one_shot_binned_even_when_range_grows(data):
    scores, labels, maps, masks = data
    maps = maps.copy()
    maps[4:7] = maps[4:7] * 40 - 100  # later batches far outside the first batch's range
    maps[7:] = maps[7:] * 1e-3 + 7
    one = evaluate(scores, labels, maps, masks, mode="binned", num_bins=4096)
    acc = MetricAccumulator(mode="binned", num_bins=4096)
    for lo in range(0, 10, 3):
        acc.update(scores[lo:lo + 3], labels[lo:lo + 3], maps[lo:lo + 3], masks[lo:lo + 3])
    streamed = acc.compute()
    for key in METRIC_KEYS:
        assert streamed[key] == pytest.approx(one[key], abs=1e-12), key


@pytest.mark.parametrize("which", ["data", "tied_data"])
def test_binned_agrees_with_exact(which, request):
    scores, labels, maps, masks = request.getfixturevalue(which)
    exact = evaluate(scores, labels, maps, masks)
    binned = evaluate(scores, labels, maps.astype(np.float32), masks, mode="binned")
    for key in METRIC_KEYS:
        assert binned[key] == pytest.approx(exact[key], abs=1e-3), key


@pytest.mark.parametrize("num_bins", [8, 64, 1024])
def test_exact_lies_within_binned_error_bounds(num_bins):
    scores, labels, maps, masks = blob_data(np.random.default_rng(num_bins), n=10, size=24)
    exact = evaluate(scores, labels, maps, masks)
    acc = MetricAccumulator(mode="binned", num_bins=num_bins)
    acc.update(scores, labels, maps, masks)
    binned, bounds = acc.compute(), acc.error_bounds()
    for key, bound in bounds.items():
        assert abs(binned[key] - exact[key]) <= bound + 1e-12, key
    if num_bins == 8:  # coarse bins: the bounds are real, not all zero
        assert bounds["pixel_aupro"] > 1e-3 and binned["pixel_aupro"] != exact["pixel_aupro"]
    if num_bins == 1024:
        assert max(bounds.values()) < 0.05


def test_binned_is_exact_when_scores_are_on_the_grid(tied_data):
    scores, labels, maps, masks = tied_data
    maps = np.round(maps * 4) / 4  # multiples of 0.25: each distinct score gets its own bin
    exact = evaluate(scores, labels, maps, masks)
    binned = evaluate(scores, labels, maps, masks, mode="binned", num_bins=256)
    for key in METRIC_KEYS:
        assert binned[key] == pytest.approx(exact[key], abs=1e-12), key


def test_infinite_scores_in_both_modes():
    _, labels, maps, masks = blob_data(np.random.default_rng(5), n=6, size=12)
    maps = maps.copy()
    maps[0, 0, :3] = np.inf
    maps[1, 2, :4] = -np.inf
    scores = maps.reshape(6, -1).max(axis=1)
    exact = evaluate(scores, labels, maps, masks)
    binned = evaluate(scores, labels, maps, masks, mode="binned")
    assert exact["pixel_aupro"] == pytest.approx(slow_aupro(maps, masks), abs=1e-12)
    assert binned["pixel_auroc"] == pytest.approx(exact["pixel_auroc"], abs=1e-3)
    assert binned["pixel_aupro"] == pytest.approx(exact["pixel_aupro"], abs=1e-3)


def test_histogram_width_bound_and_constant_start():
    hist = PowerOfTwoHistogram(num_bins=100)
    hist.update(np.full(10, 3.0), np.zeros(0))  # one value: no range known yet
    hist.update(np.array([-50.0, 1e-4]), np.array([250.0]), np.array([1.0]))
    span = 300.0
    assert hist.bin_width < 2 * span / (100 - 2)
    assert hist.bin_width >= span / 100
    t = hist.table(n_regions=1)
    assert t.n_neg == 12 and t.n_pos == 1 and t.weight.sum() == 1.0
    assert np.all(np.diff(t.thresholds) < 0)
    # each score is counted in the bin whose lower edge is the largest edge <= the score
    assert t.thresholds[0] <= 250.0 < t.thresholds[0] + hist.bin_width
    assert t.thresholds[-1] <= -50.0 < t.thresholds[-1] + hist.bin_width


def test_torch_inputs(data):
    torch = pytest.importorskip("torch")
    scores, labels, maps, masks = data
    res = evaluate(torch.tensor(scores), torch.tensor(labels),
                   torch.tensor(maps, dtype=torch.float32)[:, None], torch.tensor(masks)[:, None])
    ref = evaluate(scores, labels, maps.astype(np.float32), masks)
    for key in METRIC_KEYS:
        assert res[key] == pytest.approx(ref[key], abs=1e-12)


def test_float32_maps_match_float32_reference(data):
    scores, labels, maps, masks = data
    maps32 = maps.astype(np.float32)
    res = evaluate(scores, labels, maps32, masks)
    assert res["pixel_aupro"] == pytest.approx(aupro(maps32, masks), abs=1e-12)
    assert res["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps32.ravel()),
                                               abs=1e-12)


_S, _L = np.array([0.1, 0.9, 0.5]), np.array([0, 1, 0])
_M, _K = np.zeros((3, 4, 4)), np.zeros((3, 4, 4), dtype=np.uint8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_scores": _S[:2]}, "image_scores has 2 entries but image_labels has 3"),
        ({"image_labels": np.array([0, 1, 2])}, "image_labels: must contain only 0 and 1"),
        ({"image_scores": np.array([0.1, np.nan, 0.2])}, "image_scores: contains 1 NaN"),
        ({"image_scores": _S[:, None]}, r"image_scores: expected shape \(N,\)"),
        ({"anomaly_maps": _M[:, :3]}, "anomaly_maps has shape"),
        ({"anomaly_maps": _M[:2], "masks": _K[:2]}, "anomaly_maps has 2 maps"),
        ({"masks": _K + 255}, "divide it by 255"),
        ({"masks": None}, "anomaly_maps given without masks"),
        ({"anomaly_maps": np.full((3, 4, 4), np.nan)}, "anomaly_maps: contains 48 NaN"),
        ({"anomaly_maps": np.zeros((3, 4))}, r"expected shape \(N, H, W\)"),
        ({"image_scores": _S[:0], "image_labels": _L[:0], "anomaly_maps": None, "masks": None},
         "no images"),
        ({"mode": "fast"}, "mode must be one of"),
        ({"fpr_limit": 1.5}, "fpr_limit"),
        ({"mode": "binned", "num_bins": 2}, "num_bins"),
    ],
)
def test_bad_inputs_raise_data_error(kwargs, match):
    args = {"image_scores": _S, "image_labels": _L, "anomaly_maps": _M, "masks": _K}
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        evaluate(**args)


def test_accumulator_rejects_maps_in_some_batches_only(data):
    scores, labels, maps, masks = data
    acc = MetricAccumulator()
    acc.update(scores[:2], labels[:2], maps[:2], masks[:2])
    with pytest.raises(DataError, match="some batches but not"):
        acc.update(scores[2:4], labels[2:4])
    with pytest.raises(DataError, match="no images"):
        MetricAccumulator().compute()
