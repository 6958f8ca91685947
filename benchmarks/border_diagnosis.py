"""Diagnosis only, on a test split (nothing is chosen from it): what the outer ring of the maps
contributes. For each method (default PaDiM) fitted with its defaults on ``train/good``: pixel
AUROC of the whole maps and without their outer ring of 8 / 16 / 32 px (with the share of
defect pixels inside that ring), per defect type; image AUROC from the largest map value in
the 32-px ring alone and inside it alone; and how high the maps run in the ring and inside it
on the later ``validation/good`` images (where the set has them) and on the test split's good
and defective images (medians over images).
Run: ``PYTHONPATH=src .venv/bin/python benchmarks/border_diagnosis.py [--data DIR]
[--methods padim patchcore] [--params '{"pad": 0}']`` (default data: the shared tire set;
``--params``: Detector parameters for every method).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.preprocess import resize_mask

RING = 32


def diagnose(root: str, method: str, params: dict) -> None:
    cat = load_dataset(root)[0]
    det = Detector(method=method, **params).fit([s.path for s in cat.train], progress=False)
    maps = det.predict([s.path for s in cat.test]).maps
    size = maps.shape[-1]
    masks = np.stack([resize_mask(load_sample_mask(s, Image.open(s.path).size[::-1]), size)
                      for s in cat.test]) > 0
    print(f"== {method} {json.dumps(params) if params else ''}: pixel AUROC, whole maps: "
          f"{roc_auc_score(masks.ravel(), maps.ravel()):.3f}")
    for ring in (8, 16, RING):
        inner = np.zeros((size, size), bool)
        inner[ring:-ring, ring:-ring] = True
        sel = np.broadcast_to(inner, masks.shape)
        print(f"without the outer {ring} px: {roc_auc_score(masks[sel], maps[sel]):.3f} "
              f"(defect pixels in that ring: {masks[~sel].sum() / masks.sum():.3f})")
    for kind in sorted({s.defect_type for s in cat.test} - {"good"}):
        idx = np.array([s.defect_type in (kind, "good") for s in cat.test])
        print(f"{kind}: {roc_auc_score(masks[idx].ravel(), maps[idx].ravel()):.3f}")
    inner = np.zeros((size, size), bool)
    inner[RING:-RING, RING:-RING] = True
    labels = np.array([s.label for s in cat.test])
    print(f"image AUROC from the {RING}-px ring's max alone: "
          f"{roc_auc_score(labels, maps[:, ~inner].max(1)):.3f}, from the inside's max alone: "
          f"{roc_auc_score(labels, maps[:, inner].max(1)):.3f}")
    groups = {"test good": maps[labels == 0], "test defective": maps[labels == 1]}
    if cat.validation:
        groups = {"validation/good": det.predict([s.path for s in cat.validation]).maps,
                  **groups}
    for name, m in groups.items():
        print(f"{name} ({len(m)}): median ring max {np.median(m[:, ~inner].max(1)):.2f}, "
              f"inner max {np.median(m[:, inner].max(1)):.2f}, "
              f"ring pixel {np.median(m[:, ~inner]):.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(shared_root() / DATASETS["tire"]))
    ap.add_argument("--methods", nargs="+", default=["padim"])
    ap.add_argument("--params", type=json.loads, default={})
    args = ap.parse_args()
    for name in args.methods:
        diagnose(args.data, name, args.params)
