"""Validation-only check of where PatchCore takes its image score: the largest raw patch distance
(the paper's, the default) or the largest value of the upsampled, sigma-4 smoothed map (what
PaDiM, RD4AD and ResAD take). One fit per set serves both: the maps, hence the pixel metrics,
are identical. Writes section ``selection-patchcore-score-source`` (``-seed<S>``, ``-full``).
Run: ``.venv/bin/python benchmarks/patchcore_score_source_selection.py [--seed S] [--max-fit 0]``.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS
from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.bench.selection_suite import build_sets, seed_parser
from oddeye.metrics import evaluate
from oddeye.preprocess import resize_mask

SOURCES = ("raw (default)", "smoothed")


def score_sources(det: Detector, images: list, labels: np.ndarray, masks) -> dict[str, dict]:
    """Image / pixel AUROC of both image scores from one prediction."""
    pred = det.predict(images)
    ms = np.stack([resize_mask(np.asarray(m), det.size) for m in masks])
    smoothed = pred.maps.reshape(len(pred.maps), -1).max(1)
    return {SOURCES[0]: evaluate(pred.scores, labels, pred.maps, ms),
            SOURCES[1]: evaluate(smoothed, labels, pred.maps, ms)}


def main(argv: list[str] | None = None) -> str:
    args = seed_parser(__doc__).parse_args(argv)
    max_fit = args.max_fit or None
    section = "selection-patchcore-score-source" + (f"-seed{args.seed}" if args.seed else "") \
        + ("-full" if max_fit is None else "")
    rows: dict[str, dict[str, dict]] = {s: {} for s in SOURCES}
    with tempfile.TemporaryDirectory() as tmp:
        sets = build_sets(tmp, list(DATASETS), max_fit=max_fit)
        for name, (fit, imgs, y, ms) in sets.items():
            t0 = time.perf_counter()
            det = Detector(method="patchcore", holdout=0, seed=args.seed).fit(fit, progress=False)
            for src, r in score_sources(det, imgs, y, ms).items():
                rows[src][name] = r
                print(f"{src:14s} {name:28s} img {r['image_auroc']:.4f} "
                      f"px {r['pixel_auroc']:.4f} {time.perf_counter() - t0:.0f}s",
                      file=sys.stderr, flush=True)
    names = list(next(iter(rows.values())))
    fitted = ("every training image not validated on" if max_fit is None
              else f"at most {max_fit} fitting images")
    lines = [f"PatchCore's image score, raw patch maximum vs smoothed-map maximum (validation "
             f"only: the selection suite's sets, fit seed {args.seed}, {fitted}; one fit per "
             f"set, identical maps). Image AUROC per set, mean image / pixel AUROC:",
             "", "| image score | " + " | ".join(names) + " | mean image / pixel |",
             "| --- |" + " --- |" * (len(names) + 1)]
    for src, per in rows.items():
        img = np.mean([r["image_auroc"] for r in per.values()])
        px = np.mean([r["pixel_auroc"] for r in per.values()])
        lines.append(f"| {src} | " + " | ".join(f"{per[n]['image_auroc']:.4f}" for n in names)
                     + f" | {img:.4f} / {px:.4f} |")
    body = "\n".join(lines)
    write_section(section, body, args.out or DEFAULT_RESULTS)
    print(body)
    return body


if __name__ == "__main__":
    main()
