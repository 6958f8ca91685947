"""Slow, obviously-correct reference implementations and small test data for the metrics tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import precision_recall_curve


def sklearn_f1max(labels: np.ndarray, scores: np.ndarray) -> float:
    """F1-max from scikit-learn's precision-recall curve."""
    p, r, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return float(f1.max())


def slow_pro_points(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) at every distinct score, starting at (0, 0): a direct threshold sweep."""
    regions = []
    for i in range(maps.shape[0]):
        lab, n = ndimage.label(masks[i], structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, n + 1)]
    normal = masks == 0
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        above = maps >= t
        fprs.append((above & normal).sum() / normal.sum())
        pros.append(np.mean([above[i][region].mean() for i, region in regions]))
    return np.array(fprs), np.array(pros)


def slow_aupro(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    """AUPRO by threshold sweep, np.interp at the limit and the trapezoid rule."""
    fpr, pro = slow_pro_points(maps, masks)
    keep = fpr <= limit
    x = np.append(fpr[keep], limit)
    y = np.append(pro[keep], np.interp(limit, fpr, pro))
    return float(np.trapezoid(y, x) / limit)


def blob_data(rng: np.random.Generator, n: int = 8, size: int = 16, quantise: int | None = None,
              p_defect: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Small maps with several blob regions on some images; returns scores, labels, maps, masks."""
    masks = np.zeros((n, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        if rng.random() >= p_defect:
            continue
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(0, size, 2)
            ry, rx = rng.uniform(0.8, size / 4, 2)
            masks[i] |= (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
    maps = rng.normal(size=masks.shape) + 1.5 * masks * rng.uniform(0.2, 1.5, (n, 1, 1))
    if quantise:
        maps = np.round(maps * quantise) / quantise  # heavy ties, also across normal/defect
    labels = masks.reshape(n, -1).max(axis=1)
    scores = maps.reshape(n, -1).max(axis=1)
    return scores, labels, maps, masks
