"""Threshold curves as *tie tables*, and every metric computed from one.

A tie table lists groups of scores in descending score order; all scores of a group are tied (one
threshold). Each group holds how many negatives (normal) and positives (defect) it contains and,
for AUPRO, the summed region weight of its positives. The exact table and the binned (histogram)
table have the same form, so AUROC, AP, F1-max and the PRO curve share one implementation.

Runs of consecutive negatives with no positive between them are merged into one group: this is
lossless for all metrics here (they change only where a positive enters, or integrate along a
horizontal segment), and it is what lets the exact table avoid sorting the positives and
negatives together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TieTable:
    """Groups of tied scores in descending order: lower threshold, negatives, positives, weights."""

    thresholds: np.ndarray  # (G,) float64: the lowest score of each group (its threshold)
    neg: np.ndarray  # (G,) int64 count of negatives in the group
    pos: np.ndarray  # (G,) int64 count of positives in the group
    weight: np.ndarray  # (G,) float64 summed positive weight (1/region size for AUPRO)
    n_regions: int = 0  # number of defect regions the weights are normalised by

    @property
    def n_neg(self) -> int:
        """Total number of negatives."""
        return int(self.neg.sum())

    @property
    def n_pos(self) -> int:
        """Total number of positives."""
        return int(self.pos.sum())


def exact_table(
    neg_scores: np.ndarray,
    pos_scores: np.ndarray,
    pos_weights: np.ndarray | None = None,
    n_regions: int = 0,
) -> TieTable:
    """Build the exact tie table: sort negatives, group positives by value, count by searchsorted.

    Cost: one ``np.sort`` of the negatives plus ``np.unique`` of the positives; no joint argsort.
    """
    neg_sorted = np.sort(np.asarray(neg_scores).ravel())
    pos_scores = np.asarray(pos_scores).ravel()
    n_neg = neg_sorted.size
    if pos_scores.size == 0:
        if n_neg == 0:
            return _empty_table(n_regions)
        return TieTable(
            thresholds=np.array([neg_sorted[0]], dtype=np.float64),
            neg=np.array([n_neg], dtype=np.int64),
            pos=np.zeros(1, dtype=np.int64),
            weight=np.zeros(1, dtype=np.float64),
            n_regions=n_regions,
        )
    values, inverse, counts = np.unique(pos_scores, return_inverse=True, return_counts=True)
    if pos_weights is None:
        wsum = np.zeros(values.size, dtype=np.float64)
    else:
        wsum = np.bincount(inverse.ravel(), weights=np.asarray(pos_weights, np.float64).ravel(),
                           minlength=values.size)
    lo = np.searchsorted(neg_sorted, values, side="left")  # negatives < value
    hi = lo.copy()  # negatives <= value: differs from lo only where a negative ties the value
    first_geq = neg_sorted[np.minimum(lo, max(n_neg - 1, 0))] if n_neg else values + 1
    tied = np.flatnonzero(first_geq == values)
    if tied.size:
        hi[tied] = np.searchsorted(neg_sorted, values[tied], side="right")
    lo, hi = lo[::-1], hi[::-1]
    values, counts, wsum = values[::-1], counts[::-1].astype(np.int64), wsum[::-1]
    eq = (hi - lo).astype(np.int64)
    upper = np.concatenate(([n_neg], lo[:-1]))  # negatives below the previous positive value
    run = (upper - hi).astype(np.int64)  # negatives strictly between previous value and this one
    run_thr = neg_sorted[np.minimum(hi, max(n_neg - 1, 0))] if n_neg else np.zeros(values.size)
    tail = int(lo[-1])  # negatives below the lowest positive value

    k = values.size
    thr = np.empty(2 * k + 1, dtype=np.float64)
    neg = np.zeros(2 * k + 1, dtype=np.int64)
    pos = np.zeros(2 * k + 1, dtype=np.int64)
    weight = np.zeros(2 * k + 1, dtype=np.float64)
    thr[0:2 * k:2], neg[0:2 * k:2] = run_thr, run
    thr[1:2 * k:2], neg[1:2 * k:2], pos[1:2 * k:2], weight[1:2 * k:2] = values, eq, counts, wsum
    thr[-1], neg[-1] = (neg_sorted[0] if n_neg else -np.inf), tail
    keep = (neg > 0) | (pos > 0)
    return TieTable(thr[keep], neg[keep], pos[keep], weight[keep], n_regions)


def _empty_table(n_regions: int = 0) -> TieTable:
    z = np.zeros(0, dtype=np.int64)
    return TieTable(np.zeros(0), z, z.copy(), np.zeros(0), n_regions)


def table_auroc(t: TieTable) -> float:
    """AUROC (ties count one half), equal to the ROC trapezoid over distinct thresholds."""
    n_pos, n_neg = t.n_pos, t.n_neg
    if n_pos == 0 or n_neg == 0:
        return math.nan
    fp = np.cumsum(t.neg)
    below = n_neg - fp  # negatives strictly below each group
    # twice the Mann-Whitney U, in exact integer arithmetic
    u2 = int(np.sum(t.pos * (2 * below + t.neg), dtype=np.int64)) if t.pos.size else 0
    return u2 / (2.0 * n_pos * n_neg)


def table_average_precision(t: TieTable) -> float:
    """Average precision as scikit-learn defines it: sum of delta-recall x precision."""
    n_pos = t.n_pos
    if n_pos == 0 or t.n_neg == 0:
        return math.nan
    tp = np.cumsum(t.pos)
    fp = np.cumsum(t.neg)
    has = t.pos > 0
    return float(np.sum(t.pos[has] * (tp[has] / (tp[has] + fp[has]))) / n_pos)


def table_f1_max(t: TieTable) -> float:
    """Largest F1 = 2TP / (TP + FP + P) over all thresholds."""
    n_pos = t.n_pos
    if n_pos == 0 or t.n_neg == 0:
        return math.nan
    tp = np.cumsum(t.pos)
    fp = np.cumsum(t.neg)
    return float(np.max(2.0 * tp / (tp + fp + n_pos)))


def table_pro_curve(t: TieTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PRO curve vertices (fpr, pro, threshold), starting at (0, 0, +inf) and ending at (1, 1)."""
    n_neg = t.n_neg
    fpr = np.concatenate(([0.0], np.cumsum(t.neg) / n_neg))
    pro = np.concatenate(([0.0], np.cumsum(t.weight) / t.n_regions))
    thr = np.concatenate(([np.inf], t.thresholds))
    return fpr, pro, thr


def area_to_limit(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under the polyline (x non-decreasing) from x[0] to ``limit``.

    The curve is interpolated linearly at ``limit``; vertical segments (repeated x) add no area.
    """
    k = int(np.searchsorted(x, limit, side="right"))  # vertices with x <= limit
    xs, ys = x[:k], y[:k]
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0)) if k > 1 else 0.0
    if k < x.size and k > 0:
        x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
        y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (limit - x0) * (y0 + y_lim) / 2.0
    return float(area)


def table_aupro(t: TieTable, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve from FPR 0 to ``fpr_limit`` (area / fpr_limit)."""
    if t.n_neg == 0 or t.n_regions == 0:
        return math.nan
    fpr, pro, _ = table_pro_curve(t)
    return float(area_to_limit(fpr, pro, fpr_limit) / fpr_limit)


def aupro_from_scores(neg_scores: np.ndarray, pos_scores: np.ndarray, pos_weights: np.ndarray,
                      n_regions: int, fpr_limit: float = 0.3) -> float:
    """Exact AUPRO that sorts only the normal scores able to matter (FPR up to just past the limit).

    ``np.partition`` finds the normal score ``cut`` ranked just beyond ``fpr_limit``; only scores
    ``>= cut`` enter the table, and FPR is still divided by the total number of normal pixels. The
    curve is exact up to the vertex at ``cut``, whose FPR already exceeds the limit.
    """
    neg = np.asarray(neg_scores).ravel()
    pos = np.asarray(pos_scores).ravel()
    weights = np.asarray(pos_weights, dtype=np.float64).ravel()
    n_neg = neg.size
    if n_neg == 0 or n_regions == 0:
        return math.nan
    needed = min(n_neg, math.floor(fpr_limit * n_neg) + 2)  # fp at the cut exceeds limit * N
    if needed < n_neg:
        k = n_neg - needed
        part = np.partition(neg, k)
        cut = part[k]
        ties_below = int(np.count_nonzero(part[:k] == cut))
        neg = np.concatenate((part[k:], np.full(ties_below, cut, dtype=part.dtype)))
        keep = pos >= cut
        pos, weights = pos[keep], weights[keep]
    t = exact_table(neg, pos, weights, n_regions)
    fpr = np.concatenate(([0.0], np.cumsum(t.neg) / n_neg))
    pro = np.concatenate(([0.0], np.cumsum(t.weight) / n_regions))
    return float(area_to_limit(fpr, pro, fpr_limit) / fpr_limit)


def table_error_bounds(t: TieTable, fpr_limit: float = 0.3) -> dict[str, float]:
    """Worst-case |exact - binned| per pixel metric when each group is one histogram bin.

    Inside a bin the exact curves run monotonically between the bin's two corner points (which
    the binned curve shares), so the difference is limited by those corners; see docs/metrics.md.
    """
    nan = {"pixel_auroc": math.nan, "pixel_ap": math.nan, "pixel_f1max": math.nan,
           "pixel_aupro": math.nan}
    n_pos, n_neg = t.n_pos, t.n_neg
    if n_pos == 0 or n_neg == 0:
        return nan
    tp = np.cumsum(t.pos)
    fp = np.cumsum(t.neg)
    tp_prev = tp - t.pos
    fp_prev = fp - t.neg
    out = dict(nan)
    out["pixel_auroc"] = float(np.sum(t.pos * t.neg.astype(np.float64)) / (2.0 * n_pos * n_neg))
    has = t.pos > 0
    p_max = tp[has] / (tp[has] + fp_prev[has])
    p_min = (tp_prev[has] + 1) / (tp_prev[has] + 1 + fp[has])
    out["pixel_ap"] = float(np.sum(t.pos[has] * (p_max - p_min)) / n_pos)
    f1_upper = float(np.max(2.0 * tp / (tp + fp_prev + n_pos)))
    out["pixel_f1max"] = max(0.0, f1_upper - table_f1_max(t))
    if t.n_regions:
        fpr, pro, _ = table_pro_curve(t)
        x0, x1, dy = fpr[:-1], fpr[1:], np.diff(pro)
        full = x1 <= fpr_limit
        part = (x0 < fpr_limit) & ~full
        bound = np.sum((x1 - x0)[full] * dy[full]) / 2.0 + np.sum((fpr_limit - x0[part]) * dy[part])
        out["pixel_aupro"] = float(bound / fpr_limit)
    return out
