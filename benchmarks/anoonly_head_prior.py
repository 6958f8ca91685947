"""Design check of the image head `anoonly-head` on synthetic classes (seed 1, no shared test set).

For each synthetic class, K = 5 defective test images (seeded draw, with masks) are labelled and
removed from the test split; PatchCore (no labels) and the head with / without the distance prior,
with the AnoOnly or the base deviation loss, are scored on the remaining images. One torch thread.

Run: .venv/bin/python benchmarks/anoonly_head_prior.py (numbers quoted in docs/semisup.md).
"""

import sys

import numpy as np
import torch

from oddeye.api import Detector
from oddeye.commands._common import pick_shots
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.data.synth import generate
from oddeye.evaluation import evaluate_category
from oddeye.preprocess import resize_mask

torch.set_num_threads(1)
root = generate(sys.argv[1] if len(sys.argv) > 1 else "/tmp/oddeye_anoonly_synth", seed=1,
                n_train=40, n_test_good=15, n_test_defect=4)
K = 5
rows = {}
for cat in load_dataset(root):
    goods = [s.path for s in cat.train]
    chosen = pick_shots([s for s in cat.test if s.label == 1], K, 0)
    exclude = {s.path for s in chosen}
    masks = [np.zeros((256, 256), np.uint8)] * len(goods) + [
        resize_mask(load_sample_mask(s, (256, 256)), 256) for s in chosen]
    variants = {"patchcore": dict(method="patchcore", cosine=False)}  # the heads' raw features
    for prior in (True, False):
        for anoonly in (True, False):
            variants[f"head prior={prior} anoonly={anoonly}"] = dict(
                method="anoonly-head", distance_prior=prior, anoonly=anoonly)
    for name, params in variants.items():
        det = Detector(**params)
        if params["method"] == "patchcore":
            det.fit(goods, progress=False)
        else:
            det.fit(goods + [s.path for s in chosen], labels=[0] * len(goods) + [1] * K,
                    masks=masks, progress=False)
        r = evaluate_category(det, cat, progress=False, exclude=exclude)
        rows.setdefault(name, []).append((r["image_auroc"], r["pixel_auroc"], r["pixel_aupro"]))
        print(f"{cat.name:8s} {name:32s} img {r['image_auroc']:.3f} px {r['pixel_auroc']:.3f} "
              f"aupro {r['pixel_aupro']:.3f}", flush=True)
print("mean over classes (image AUROC / pixel AUROC / AUPRO@0.3):")
for name, vals in rows.items():
    m = np.mean(vals, axis=0)
    print(f"  {name:32s} {m[0]:.3f} / {m[1]:.3f} / {m[2]:.3f}")
