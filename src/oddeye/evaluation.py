"""Evaluate a fitted detector on MVTec-layout test splits with the one documented protocol.

Protocol: images resized to the model size (no crop), masks resized with nearest neighbour, maps
smoothed with the model's Gaussian, image score as stored in the model, metrics on raw scores.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from oddeye.data.mvtec import CategoryData, load_sample_mask
from oddeye.errors import DataError, OddeyeError
from oddeye.preprocess import resize_mask

METRIC_KEYS = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap",
               "pixel_f1max", "pixel_aupro")


def auroc_by_type(scores: np.ndarray, labels: np.ndarray, types: Sequence[str]) -> dict:
    """Image AUROC of the good images against each defect type alone: which defects a model
    misses, which a single AUROC over all types hides. Types without images are left out."""
    from oddeye.metrics.functional import auroc

    scores, labels, types = np.asarray(scores), np.asarray(labels), np.asarray(types)
    good = scores[labels == 0]
    if good.size == 0:
        return {}
    out = {}
    for t in sorted(set(types[labels == 1].tolist())):
        bad = scores[(labels == 1) & (types == t)]
        out[t] = float(auroc(np.r_[good, bad], np.r_[np.zeros(good.size), np.ones(bad.size)]))
    return out


def _bad_file(skipped: list[dict] | None, sample, path, exc: Exception) -> None:
    """Record an unreadable image or mask in ``skipped``, or raise when there is no list."""
    if skipped is None:
        raise exc
    skipped.append({"path": str(path), "image": str(sample.path), "error": str(exc)})


def evaluate_category(detector, cat: CategoryData, progress: bool = True,
                      exclude: set | None = None, details: dict | None = None,
                      mode: str = "exact", skipped: list[dict] | None = None) -> dict:
    """Metrics of ``detector`` on ``cat.test`` (minus ``exclude`` paths), with timing.

    Maps stream batch by batch into ``oddeye.metrics.MetricAccumulator`` (``mode="binned"`` keeps
    memory fixed for very large test sets). When ``details`` is a dict it receives per-image
    ``paths, scores, labels, defect_types`` (for reports), so the test split is scored once.

    An unreadable image or mask (or a mask whose size is not its image's) raises, unless
    ``skipped`` is a list: the image is then left out and ``{"path", "image", "error"}`` appended
    there, so one bad file does not cost the metrics of the rest (``n_skipped`` in the result).
    """
    from tqdm.auto import tqdm

    from oddeye.io.images import read_image
    from oddeye.metrics import MetricAccumulator

    samples = [s for s in cat.test if not exclude or s.path not in exclude]
    if not samples:
        raise DataError(f"category {cat.name!r} at {cat.root} has no test images")
    n_before = len(skipped) if skipped is not None else 0
    acc = MetricAccumulator(mode=mode)
    scores, scored = [], []
    seconds = 0.0
    bs = detector.batch_size
    bar = tqdm(total=len(samples), desc=f"test {cat.name}", unit="img", disable=not progress,
               leave=False)
    for start in range(0, len(samples), bs):
        t0 = time.perf_counter()
        batch, images = [], []
        for s in samples[start:start + bs]:
            try:
                images.append(read_image(s.path))
                batch.append(s)
            except OddeyeError as exc:
                _bad_file(skipped, s, s.path, exc)
        bar.update(len(samples[start:start + bs]))
        if not batch:
            continue
        pred = detector.predict(images, batch_size=len(images))
        seconds += time.perf_counter() - t0
        keep, masks = [], []
        for i, (s, (h, w)) in enumerate(zip(batch, pred.original_sizes, strict=True)):
            try:
                masks.append(resize_mask(load_sample_mask(s, (h, w)), detector.size))
                keep.append(i)
            except OddeyeError as exc:
                _bad_file(skipped, s, s.mask_path, exc)
        if not keep:
            continue
        batch = [batch[i] for i in keep]
        labels = np.array([s.label for s in batch], dtype=np.int64)
        acc.update(pred.scores[keep], labels, pred.maps[keep].astype(np.float32),
                   np.stack(masks))
        scores.append(pred.scores[keep])
        scored += batch
    bar.close()
    if not scored:
        raise DataError(f"category {cat.name!r} at {cat.root}: none of its {len(samples)} test "
                        "images could be scored (every image or mask is unreadable)")
    result = {k: float(v) for k, v in acc.compute().items() if k in METRIC_KEYS}
    all_scores, labels = np.concatenate(scores), np.array([s.label for s in scored])
    types = [s.defect_type for s in scored]
    result["image_auroc_by_type"] = auroc_by_type(all_scores, labels, types)
    if details is not None:
        details.update(paths=[s.path for s in scored], scores=all_scores, labels=labels,
                       defect_types=types)
    result["n_images"] = len(scored)
    if skipped is not None:
        result["n_skipped"] = len(skipped) - n_before
    result["seconds"] = seconds
    result["ms_per_image"] = 1000.0 * seconds / len(scored)
    return result


def mean_metrics(per_category: dict[str, dict]) -> dict:
    """Unweighted mean of every metric over categories (NaN-aware)."""
    out: dict = {}
    for k in METRIC_KEYS:
        vals = [r[k] for r in per_category.values() if k in r and r[k] == r[k]]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    out["n_images"] = int(sum(r["n_images"] for r in per_category.values()))
    out["seconds"] = float(sum(r["seconds"] for r in per_category.values()))
    return out


def format_by_type(per_category: dict[str, dict]) -> str:
    """One line per category: image AUROC of good vs each defect type."""
    lines = []
    for name, r in per_category.items():
        by_type = r.get("image_auroc_by_type") or {}
        if by_type:
            cells = ", ".join(f"{t} {v:.3f}" for t, v in by_type.items())
            lines.append(f"{name}: image AUROC by defect type: {cells}")
    return "\n".join(lines)


def format_table(per_category: dict[str, dict], keys: Sequence[str] = METRIC_KEYS) -> str:
    """A readable fixed-width table: one row per category and the mean."""
    short = [k.replace("image_", "img_").replace("pixel_", "px_") for k in keys]
    name_w = max([8] + [len(c) for c in per_category])
    lines = [f"{'category':<{name_w}}  " + "  ".join(f"{s:>10}" for s in short) + f"  {'n':>5}"]
    rows = list(per_category.items())
    if len(per_category) > 1:  # appended, not keyed: a category may itself be named "mean"
        rows.append(("mean", mean_metrics(per_category)))
    for name, r in rows:
        cells = "  ".join(f"{r.get(k, float('nan')):>10.4f}" for k in keys)
        lines.append(f"{name:<{name_w}}  {cells}  {r.get('n_images', 0):>5}")
    return "\n".join(lines)
