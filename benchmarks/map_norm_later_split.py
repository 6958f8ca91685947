"""Diagnostic: PatchCore with and without ``map_norm`` on tire's ``validation/good`` (a later
acquisition than ``train/good``) plus two pseudo-defects per image; fitted on 100 ``train/good``
images with a fifth held out. No test split is read. Quoted in docs/methods.md.

Run: PYTHONPATH=src .venv/bin/python benchmarks/map_norm_later_split.py
"""

from __future__ import annotations

import numpy as np
import torch

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.bench.selection_suite import SEVERITY
from oddeye.data.mvtec import load_dataset
from oddeye.data.pseudo import KINDS, make_pseudo_anomaly
from oddeye.metrics import evaluate
from oddeye.preprocess import load_resized


def main() -> None:
    torch.set_num_threads(2)
    cat = load_dataset(shared_root() / DATASETS["tire"])[0]
    goods = load_resized([s.path for s in cat.validation], 256)
    rng = np.random.default_rng(0)
    images, labels, masks = [], [], []
    for i, g in enumerate(goods):
        images.append(g)
        labels.append(0)
        masks.append(np.zeros((256, 256), np.uint8))
        for c in range(2):
            bad, m = make_pseudo_anomaly(g, goods[(i + 1) % len(goods)], rng,
                                         KINDS[(2 * i + c) % len(KINDS)], severity=SEVERITY)
            images.append(bad)
            labels.append(1)
            masks.append(m)
    fit = [s.path for s in cat.train][:100]
    for map_norm in (None, "position"):
        det = Detector(method="patchcore", map_norm=map_norm, holdout=0.2).fit(
            fit, progress=False)
        p = det.predict(images)
        r = evaluate(p.scores, np.array(labels), p.maps, np.stack(masks))
        print(f"map_norm={map_norm}: {len(images)} images, image AUROC {r['image_auroc']:.3f} "
              f"pixel AUROC {r['pixel_auroc']:.3f} AUPRO {r['pixel_aupro']:.3f}", flush=True)


if __name__ == "__main__":
    main()
