"""``evaluate`` and the streaming ``MetricAccumulator``: image- and pixel-level anomaly metrics."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from oddeye.errors import DataError
from oddeye.metrics import curves
from oddeye.metrics.curves import TieTable
from oddeye.metrics.functional import check_fpr_limit, region_weights
from oddeye.metrics.histogram import PowerOfTwoHistogram
from oddeye.metrics.inputs import check_batch

METRIC_KEYS = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap",
               "pixel_f1max", "pixel_aupro", "n_images")
PIXEL_KEYS = ("pixel_auroc", "pixel_ap", "pixel_f1max", "pixel_aupro")
MODES = ("exact", "binned")
DEFAULT_BINS = 65536


class MetricAccumulator:
    """Collects scores batch by batch and computes the same dict as :func:`evaluate`.

    Image scores are always kept exactly (a few bytes per image). Pixel scores depend on ``mode``:

    * ``"exact"``: normal-pixel scores, defect-pixel scores and their region weights are stored as
      given (float32 maps stay 4 bytes a pixel); ``compute`` sorts them once. Exact, memory grows
      with the number of pixels: fine for a few hundred 256x256 maps.
    * ``"binned"``: fixed memory (``num_bins`` bins). Scores go into a histogram whose bin width is
      a power of two that widens itself exactly when a batch falls outside it, so no score range is
      needed in advance. Each bin acts as one tied threshold; :meth:`error_bounds` gives the
      worst-case difference to the exact values (see docs/metrics.md).
    """

    def __init__(self, mode: str = "exact", num_bins: int = DEFAULT_BINS,
                 fpr_limit: float = 0.3) -> None:
        if mode not in MODES:
            raise DataError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.fpr_limit = check_fpr_limit(fpr_limit)
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._has_maps: bool | None = None
        self._n_regions = 0
        self._neg: list[np.ndarray] = []
        self._pos: list[np.ndarray] = []
        self._weight: list[np.ndarray] = []
        self._hist = PowerOfTwoHistogram(num_bins) if mode == "binned" else None

    @property
    def n_images(self) -> int:
        """Number of images added so far."""
        return int(sum(s.size for s in self._scores))

    def update(self, image_scores: Any, image_labels: Any, anomaly_maps: Any = None,
               masks: Any = None) -> None:
        """Add one batch: scores (N,), labels (N,) in {0,1}, optional maps and masks (N, H, W)."""
        scores, labels, maps, gt = check_batch(image_scores, image_labels, anomaly_maps, masks)
        has_maps = maps is not None
        if self._has_maps is not None and has_maps != self._has_maps and scores.size:
            raise DataError("anomaly_maps/masks were given for some batches but not for others")
        if scores.size:
            self._has_maps = has_maps
        self._scores.append(scores.copy())
        self._labels.append(labels.copy())
        if not has_maps or maps.size == 0:
            return
        weights, n_regions = region_weights(gt)
        self._n_regions += n_regions
        neg, pos = maps[~gt], maps[gt]
        if self._hist is not None:
            self._hist.update(neg, pos, weights)
        else:
            self._neg.append(neg)
            self._pos.append(pos)
            self._weight.append(weights)

    def image_table(self) -> TieTable:
        """Exact tie table of all image scores so far."""
        scores, labels = _cat(self._scores, np.float64), _cat(self._labels, bool)
        return curves.exact_table(scores[~labels], scores[labels])

    def pixel_table(self) -> TieTable | None:
        """Tie table of all pixel scores (exact or binned), or None when no maps were given."""
        if not self._has_maps:
            return None
        if self._hist is not None:
            return self._hist.table(self._n_regions)
        return curves.exact_table(_cat(self._neg, np.float64), _cat(self._pos, np.float64),
                                  _cat(self._weight, np.float64), self._n_regions)

    def compute(self) -> dict[str, float | int]:
        """All metrics as a dict (see :func:`evaluate` for keys, NaN rules and warnings)."""
        n = self.n_images
        if n == 0:
            raise DataError("no images: call update() with at least one image before compute()")
        out: dict[str, float | int] = {}
        img = self.image_table()
        if _single_class(img, "image-level metrics", "images"):
            out.update(image_auroc=math.nan, image_ap=math.nan, image_f1max=math.nan)
        else:
            out.update(image_auroc=curves.table_auroc(img),
                       image_ap=curves.table_average_precision(img),
                       image_f1max=curves.table_f1_max(img))
        out.update(dict.fromkeys(PIXEL_KEYS, math.nan))
        pix = self.pixel_table()
        if pix is not None and not _single_class(pix, "pixel-level metrics", "pixels"):
            out.update(pixel_auroc=curves.table_auroc(pix),
                       pixel_ap=curves.table_average_precision(pix),
                       pixel_f1max=curves.table_f1_max(pix))
            if pix.n_regions:
                out["pixel_aupro"] = curves.table_aupro(pix, self.fpr_limit)
        out["n_images"] = n
        return {k: out[k] for k in METRIC_KEYS}

    def error_bounds(self) -> dict[str, float]:
        """Worst-case |binned - exact| of each pixel metric (all 0.0 in exact mode, NaN if none)."""
        pix = self.pixel_table()
        if pix is None:
            return dict.fromkeys(PIXEL_KEYS, math.nan)
        if self._hist is None:
            return dict.fromkeys(PIXEL_KEYS, 0.0)
        return curves.table_error_bounds(pix, self.fpr_limit)


def evaluate(image_scores: Any, image_labels: Any, anomaly_maps: Any = None, masks: Any = None,
             *, mode: str = "exact", num_bins: int = DEFAULT_BINS,
             fpr_limit: float = 0.3) -> dict[str, float | int]:
    """Image- and pixel-level AUROC, AP, F1-max and pixel AUPRO (to ``fpr_limit``) in one dict.

    Inputs are numpy arrays or torch tensors: ``image_scores`` (N,), ``image_labels`` (N,) in
    {0, 1}, optional ``anomaly_maps`` (N, H, W) and binary ``masks`` (N, H, W) (both or neither).
    Scores are used raw: higher = more anomalous, nothing is clamped or normalised.

    Returns keys ``image_auroc, image_ap, image_f1max, pixel_auroc, pixel_ap, pixel_f1max,
    pixel_aupro`` (floats) and ``n_images`` (int). Pixel keys are NaN when no maps are given. A
    metric whose data hold a single class (all images good, all defective, or masks without
    defect pixels) is NaN and a ``UserWarning`` says why; ``pixel_aupro`` is NaN likewise when no
    mask has a defect region. Bad inputs raise ``oddeye.errors.DataError``. ``mode="binned"``
    computes the pixel metrics from a ``num_bins`` histogram (see :class:`MetricAccumulator`).
    """
    acc = MetricAccumulator(mode=mode, num_bins=num_bins, fpr_limit=fpr_limit)
    acc.update(image_scores, image_labels, anomaly_maps, masks)
    return acc.compute()


def _single_class(t: TieTable, what: str, unit: str) -> bool:
    if t.n_pos and t.n_neg:
        return False
    only = "normal" if t.n_pos == 0 else "defective"
    warnings.warn(f"{what} are NaN: all {unit} are {only}, and AUROC/AP/F1 need both classes",
                  UserWarning, stacklevel=3)
    return True


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=dtype)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts)
