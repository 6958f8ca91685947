"""Shared pieces of the map-fusion experiments (``patchcore_backbone_fusion.py``,
``method_fusion_selection.py``, ``size_fusion_selection.py``): score one member model, fuse
standardised maps, write the table, run a validation script. Not a benchmark itself."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.metrics import evaluate


def at(maps: np.ndarray, size: int | None) -> np.ndarray:
    """(N, h, w) maps resized (bilinear) to (N, size, size); unchanged for None or that size."""
    if size is None or maps.shape[-1] == size:
        return maps
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


def member_result(fit_detector: Callable, good: list, images: list, labels: np.ndarray,
                  masks: np.ndarray, size: int | None = None) -> tuple[dict, np.ndarray]:
    """(metrics with the member's own image score and ``seconds``, its maps standardised by
    the mean and spread of its maps of ``good``) of the detector ``fit_detector()`` fits; maps
    at ``size`` px (``at``) for the metrics and the fusion."""
    t0 = time.perf_counter()
    det = fit_detector()
    g = at(det.predict(good).maps, size)
    mu, sd = float(g.mean()), float(g.std())
    preds = [det.predict(images[i:i + 16]) for i in range(0, len(images), 16)]
    maps = at(np.concatenate([p.maps for p in preds]), size)
    res = evaluate(np.concatenate([p.scores for p in preds]), labels, maps, masks)
    res["seconds"] = time.perf_counter() - t0
    return res, (maps - mu) / sd


def fused_result(z: Sequence[np.ndarray], labels: np.ndarray, masks: np.ndarray) -> dict:
    """Metrics of the sum of standardised maps, image score its maximum."""
    f = sum(z)
    return evaluate(f.reshape(len(f), -1).max(1), labels, f, masks)


def fusion_table(title: str, rows: dict[str, dict[str, dict]], columns: Sequence[str]
                 ) -> list[str]:
    """The title, a table of image AUROC (a member's ``raw_image_auroc`` in brackets where
    present) / pixel AUROC / AUPRO per set and column, and the means over sets."""
    names = list(rows)
    lines = [title, "", "| set | " + " | ".join(columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    for n in names:
        cells = []
        for r in columns:
            x = rows[n][r]
            own = f" ({x['raw_image_auroc']:.4f})" if "raw_image_auroc" in x else ""
            cells.append(f"{x['image_auroc']:.4f}{own} / {x['pixel_auroc']:.4f} / "
                         f"{x['pixel_aupro']:.4f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    means = [f"{np.mean([rows[n][r]['image_auroc'] for n in names]):.4f} / "
             f"{np.mean([rows[n][r]['pixel_auroc'] for n in names]):.4f}" for r in columns]
    lines.append("| mean image / pixel | " + " | ".join(means) + " |")
    return lines


def median_seconds(rows: dict[str, dict[str, dict]], column: str) -> str:
    """Median over sets of one column's ``seconds``, rounded."""
    return f"{np.median([rows[n][column]['seconds'] for n in rows]):.0f}"


def run_validation(doc: str, section: str, fused_rows: Callable, render: Callable,
                   argv: list[str] | None = None) -> str:
    """A validation-only fusion script: ``fused_rows(fit, good, images, labels, masks, seed)``
    on every selection set (``patchcore_backbone_fusion.validation_sets``), ``render(seed,
    rows)`` written as ``section`` (``-seed<S>``)."""
    from patchcore_backbone_fusion import validation_sets

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="results file (default benchmarks/RESULTS.md)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for name, (fit, good, imgs, y, ms) in validation_sets(args.seed, tmp).items():
            rows[name] = fused_rows(fit, good, imgs, y, ms, args.seed)
            print(name, {r: round(v["image_auroc"], 4) for r, v in rows[name].items()},
                  file=sys.stderr, flush=True)
    body = render(args.seed, rows)
    write_section(section + (f"-seed{args.seed}" if args.seed else ""), body,
                  args.out or DEFAULT_RESULTS)
    print(body)
    return body
