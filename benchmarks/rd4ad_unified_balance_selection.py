"""Validation-only check (no test split used) of RD4AD's unified fit with ``balance=True``.

One unified model on the three real sets' training images (at their natural sizes, so the
imbalance is there: the selection suite's usual cap of 100 fitting images per set would hide
it), scored on each set's validation data as the selection suite builds it (held-out good images
with pseudo-defects placed anywhere; tire's later ``validation/good``). Plain vs balanced epochs,
everything else at the method's defaults. Writes section ``selection-rd4ad-unified-balance``.
Run: ``.venv/bin/python benchmarks/rd4ad_unified_balance_selection.py [--seed S]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.bench.selection_suite import validation_split
from oddeye.data.mvtec import load_dataset
from oddeye.metrics import evaluate

CANDIDATES = {"plain": {"balance": False}, "balance=True": {"balance": True}}
SETS = list(DATASETS)  # the detection suite's real sets, in its order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="validation draw and fit seed")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    sets = {}
    for ds in SETS:
        cat = load_dataset(shared_root() / DATASETS[ds])[0]
        later = [s.path for s in cat.validation]
        sets[ds] = validation_split([s.path for s in cat.train], 256, seed=a.seed,
                                    max_fit=10**6, later=later, placement="anywhere")
    paths = [p for ds in SETS for p in sets[ds][0]]
    cats = [ds for ds in SETS for _ in sets[ds][0]]
    rows = {}
    for label, params in CANDIDATES.items():
        t0 = time.perf_counter()
        det = Detector(method="rd4ad", holdout=0, seed=a.seed, **params).fit(
            paths, categories=cats, progress=False)
        rows[label] = {}
        for ds in SETS:
            _, imgs, y, masks = sets[ds]
            pred = det.predict(imgs)
            rows[label][ds] = evaluate(pred.scores, y, pred.maps, masks)
            print(f"{label:18s} {ds:14s} img {rows[label][ds]['image_auroc']:.3f} "
                  f"px {rows[label][ds]['pixel_auroc']:.3f}", file=sys.stderr, flush=True)
        rows[label]["seconds"] = time.perf_counter() - t0
    sizes = ", ".join(f"{ds} {cats.count(ds)}" for ds in SETS)
    lines = ["## Selection: RD4AD unified fit, plain vs category-balanced epochs", "",
             f"Validation data only (seed {a.seed}): one unified RD4AD (method defaults) on the "
             f"sets' fitting images at their natural sizes ({sizes}), scored on each set's "
             "held-out validation images with pseudo-defects placed anywhere (tire: its later "
             "`validation/good`). Cells: image AUROC / pixel AUROC.", "",
             "| unified fit | " + " | ".join(SETS) + " | mean img | mean px | seconds |",
             "|---|" + "---|" * (len(SETS) + 3)]
    for label, res in rows.items():
        img = np.mean([res[ds]["image_auroc"] for ds in SETS])
        px = np.mean([res[ds]["pixel_auroc"] for ds in SETS])
        cells = [f"{res[ds]['image_auroc']:.3f} / {res[ds]['pixel_auroc']:.3f}" for ds in SETS]
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {img:.3f} | {px:.3f} | {res['seconds']:.0f} |")
    write_section("selection-rd4ad-unified-balance" + (f"-seed{a.seed}" if a.seed else ""),
                  "\n".join(lines), a.out or DEFAULT_RESULTS)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
