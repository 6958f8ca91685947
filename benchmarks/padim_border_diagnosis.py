"""Diagnosis only, on a test split (nothing is chosen from it): where PaDiM's pixel AUROC is
lost. Prints the pixel AUROC of the whole maps, of the maps without their outer ring of 8 / 16 /
32 px (and the share of defect pixels inside that ring), per defect type, and how high the maps
run in the 32-px ring and inside it on the later ``validation/good`` images (where the set has
them) and on the test split's good and defective images (medians over images).
Run: ``PYTHONPATH=src .venv/bin/python benchmarks/padim_border_diagnosis.py [DATA_DIR]``
(default: the shared tire set).
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.preprocess import resize_mask


def main(root: str) -> None:
    cat = load_dataset(root)[0]
    det = Detector(method="padim").fit([s.path for s in cat.train], progress=False)
    maps = det.predict([s.path for s in cat.test]).maps
    size = maps.shape[-1]
    masks = np.stack([resize_mask(load_sample_mask(s, Image.open(s.path).size[::-1]), size)
                      for s in cat.test]) > 0
    print(f"pixel AUROC, whole maps: {roc_auc_score(masks.ravel(), maps.ravel()):.3f}")
    for ring in (8, 16, 32):
        inner = np.zeros((size, size), bool)
        inner[ring:-ring, ring:-ring] = True
        sel = np.broadcast_to(inner, masks.shape)
        print(f"without the outer {ring} px: {roc_auc_score(masks[sel], maps[sel]):.3f} "
              f"(defect pixels in that ring: {masks[~sel].sum() / masks.sum():.3f})")
    for kind in sorted({s.defect_type for s in cat.test} - {"good"}):
        idx = np.array([s.defect_type in (kind, "good") for s in cat.test])
        print(f"{kind}: {roc_auc_score(masks[idx].ravel(), maps[idx].ravel()):.3f}")
    inner = np.zeros((size, size), bool)
    inner[32:-32, 32:-32] = True
    labels = np.array([s.label for s in cat.test])
    groups = {"test good": maps[labels == 0], "test defective": maps[labels == 1]}
    if cat.validation:
        groups = {"validation/good": det.predict([s.path for s in cat.validation]).maps,
                  **groups}
    for name, m in groups.items():
        print(f"{name} ({len(m)}): median ring max {np.median(m[:, ~inner].max(1)):.2f}, "
              f"inner max {np.median(m[:, inner].max(1)):.2f}, "
              f"ring pixel {np.median(m[:, ~inner]):.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(shared_root() / DATASETS["tire"]))
