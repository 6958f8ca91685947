"""Diagnostic (test split, chooses nothing): does the image size matter on a set of mixed sizes?

1. Without any model: how well the image's width, height, aspect ratio or area alone separates
   good test images from each defect type (AUROC folded to ``max(a, 1 - a)``: 0.5 = no cue, in
   either direction). A cue here is a shortcut of that split, which a model could exploit.
2. PatchCore with its defaults, seed 0: pixel AUROC as the protocol takes it (maps and masks at
   the model's 256 px) and at each image's own size (the map upsampled, the mask as stored), so
   images weigh by their area instead of equally.

Run: .venv/bin/python benchmarks/size_diagnosis.py magnetic_tile   (quoted in docs/methods.md,
"Patch grid")
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.evaluation import auroc_by_type
from oddeye.metrics import MetricAccumulator
from oddeye.preprocess import resize_mask


def size_cues(tests: list) -> None:
    """Print the folded AUROC of each size feature, good vs each defect type."""
    sizes = []
    for s in tests:
        with Image.open(s.path) as im:
            sizes.append(im.size)
    w, h = np.array(sizes, float).T
    types = [s.defect_type for s in tests]
    labels = np.array([t != "good" for t in types], int)
    for name, value in (("width", w), ("height", h), ("aspect", w / h), ("area", w * h)):
        row = auroc_by_type(value, labels, types)
        print(f"{name}: " + ", ".join(f"{t} {max(a, 1 - a):.3f}" for t, a in row.items()),
              flush=True)


def native_pixels(cat) -> None:
    """Print PatchCore's pixel AUROC at 256 px and at each image's own size."""
    det = Detector(method="patchcore", seed=0).fit([s.path for s in cat.train], progress=False)
    at_model, native = MetricAccumulator(), MetricAccumulator()
    tests, bs = cat.test, det.batch_size
    for start, pred in zip(range(0, len(tests), bs), det.iter_predict([s.path for s in tests]),
                           strict=True):
        batch = tests[start:start + bs]
        labels = np.array([s.label for s in batch])
        masks = [load_sample_mask(s, hw) for s, hw in zip(batch, pred.original_sizes, strict=True)]
        at_model.update(pred.scores, labels, pred.maps.astype(np.float32),
                        np.stack([resize_mask(m, det.size) for m in masks]))
        for i, m in enumerate(masks):
            up = F.interpolate(torch.from_numpy(pred.maps[i:i + 1, None].astype(np.float32)),
                               size=m.shape, mode="bilinear", align_corners=False)[:, 0].numpy()
            native.update(pred.scores[i:i + 1], labels[i:i + 1], up, m[None])
    for name, acc in (("256 px (protocol)", at_model), ("native size", native)):
        r = acc.compute()
        print(f"patchcore pixel AUROC at {name}: {r['pixel_auroc']:.3f} "
              f"(image AUROC {r['image_auroc']:.3f})", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    category = load_dataset(shared_root() / DATASETS[sys.argv[1]])[0]
    size_cues(category.test)
    native_pixels(category)
