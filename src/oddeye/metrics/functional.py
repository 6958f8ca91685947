"""Stand-alone metric functions on numpy arrays (or torch tensors): AUROC, AP, F1-max, PRO/AUPRO.

Each returns NaN with a ``UserWarning`` when only one class is present, and treats tied scores as
one threshold, exactly as scikit-learn does.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy import ndimage

from oddeye.errors import DataError
from oddeye.metrics import curves
from oddeye.metrics.curves import TieTable
from oddeye.metrics.inputs import as_binary, as_scores, to_numpy

# 8-connectivity inside each (H, W) slice, never across images of the stack
_SLICE_8 = np.zeros((3, 3, 3), dtype=bool)
_SLICE_8[1] = True


def region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Per defect pixel (``masks[masks]`` order) 1 / size of its 8-connected region; region count.

    Summing these weights over the pixels above a threshold and dividing by the count gives the
    mean per-region overlap (the PRO value) without a loop over regions.
    """
    with_defects = masks.reshape(masks.shape[0], -1).any(axis=1)
    if not with_defects.any():
        return np.zeros(0, dtype=np.float64), 0
    sub = masks[with_defects] if not with_defects.all() else masks  # skip defect-free images
    labels, n_regions = ndimage.label(sub, structure=_SLICE_8)
    ids = labels[sub]  # same order as masks[masks]: defect-free images add no pixels
    sizes = np.bincount(ids, minlength=n_regions + 1)
    return 1.0 / sizes[ids].astype(np.float64), int(n_regions)


def pixel_table(anomaly_maps: np.ndarray, masks: np.ndarray) -> TieTable:
    """Exact tie table of validated (N, H, W) maps and bool masks, with AUPRO region weights."""
    weights, n_regions = region_weights(masks)
    return curves.exact_table(anomaly_maps[~masks], anomaly_maps[masks], weights, n_regions)


def _scores_labels(scores: Any, labels: Any) -> TieTable:
    s = as_scores(np.ravel(to_numpy(scores, "scores")), "scores", 1)
    y = as_binary(np.ravel(to_numpy(labels, "labels")), "labels", 1)
    if s.shape != y.shape:
        raise DataError(f"scores has {s.size} entries but labels has {y.size}")
    if s.size == 0:
        raise DataError("scores: empty input")
    return curves.exact_table(s[~y], s[y])


def warn_single_class(t: TieTable, what: str) -> bool:
    """Warn and return True when the table has only one class (the metric is then NaN)."""
    if t.n_pos and t.n_neg:
        return False
    only = "normal (label 0)" if t.n_pos == 0 else "defective (label 1)"
    warnings.warn(f"{what}: only {only} samples given; the metric needs both classes, "
                  "so it is NaN", UserWarning, stacklevel=3)
    return True


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve (higher score = more anomalous); ties count one half."""
    t = _scores_labels(scores, labels)
    return math.nan if warn_single_class(t, "auroc") else curves.table_auroc(t)


def average_precision(scores: Any, labels: Any) -> float:
    """Average precision as scikit-learn's ``average_precision_score`` (no interpolation)."""
    t = _scores_labels(scores, labels)
    return math.nan if warn_single_class(t, "average_precision") else \
        curves.table_average_precision(t)


def f1_max(scores: Any, labels: Any) -> float:
    """Best F1 score over every threshold (the optimum the precision-recall curve allows)."""
    t = _scores_labels(scores, labels)
    return math.nan if warn_single_class(t, "f1_max") else curves.table_f1_max(t)


def precision_recall_f1(scores: Any, labels: Any, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of the decision ``score > threshold`` (1 = anomalous): what a
    model with that threshold flags, as ``oddeye calibrate`` reports it before and after.
    Zero where a ratio has nothing to count (no flagged or no anomalous sample)."""
    s = as_scores(np.ravel(to_numpy(scores, "scores")), "scores", 1)
    y = as_binary(np.ravel(to_numpy(labels, "labels")), "labels", 1)
    if s.shape != y.shape:
        raise DataError(f"scores has {s.size} entries but labels has {y.size}")
    pred = s > threshold
    tp, fp, fn = int(np.sum(pred & y)), int(np.sum(pred & ~y)), int(np.sum(~pred & y))
    return {"f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0}


def _maps_masks(anomaly_maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    maps = to_numpy(anomaly_maps, "anomaly_maps")
    gt = to_numpy(masks, "masks")
    if maps.ndim == 2:
        maps = maps[None]
    if gt.ndim == 2:
        gt = gt[None]
    maps = as_scores(maps, "anomaly_maps", 3)
    gt = as_binary(gt, "masks", 3)
    if maps.shape != gt.shape:
        raise DataError(f"anomaly_maps has shape {maps.shape} but masks has shape {gt.shape}")
    return maps, gt


def pro_curve(anomaly_maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact PRO curve of (N, H, W) maps and masks: arrays ``fpr, pro, thresholds``.

    The vertices are the thresholds where the curve turns (every distinct defect-pixel score and
    the end of each run of normal-only scores), from (0, 0) at +inf to (1, 1); thresholds between
    them only move along a horizontal segment, so the polyline equals the full curve.
    Raises ``DataError`` when there are no normal pixels or no defect regions.
    """
    maps, gt = _maps_masks(anomaly_maps, masks)
    t = pixel_table(maps, gt)
    if t.n_neg == 0 or t.n_regions == 0:
        what = "normal pixels" if t.n_neg == 0 else "defect regions"
        raise DataError(f"masks: no {what}; the PRO curve is undefined")
    return curves.table_pro_curve(t)


def aupro(anomaly_maps: Any, masks: Any, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD protocol), exact.

    NaN with a ``UserWarning`` when there is no normal pixel or no defect region.
    """
    check_fpr_limit(fpr_limit)
    maps, gt = _maps_masks(anomaly_maps, masks)
    weights, n_regions = region_weights(gt)
    n_normal = gt.size - int(np.count_nonzero(gt))
    if n_normal == 0 or n_regions == 0:
        what = "normal pixels" if n_normal == 0 else "defect regions"
        warnings.warn(f"aupro: masks contain no {what}, so AUPRO is NaN", UserWarning, stacklevel=2)
        return math.nan
    return curves.aupro_from_scores(maps[~gt], maps[gt], weights, n_regions, fpr_limit)


def check_fpr_limit(fpr_limit: float) -> float:
    """Validate the AUPRO integration limit (0 < limit <= 1)."""
    limit = float(fpr_limit)
    if not 0.0 < limit <= 1.0:
        raise DataError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    return limit
