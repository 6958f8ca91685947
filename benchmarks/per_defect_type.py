"""Diagnostic (test split, chooses nothing): image and pixel AUROC of good vs each defect type.

Image AUROC: good images vs the type's images. Pixel AUROC: the pixels of the good images and of
the type's images (defect pixels positive), at the model's size as in the protocol; with each
type's share of all defect pixels, which says how much it weighs in the pooled pixel AUROC.

Border diagnosis: the share of good images whose map maximum lies within 16 px of the edge, and
the image AUROC when the outer ``RING_PX`` of the map are left out of the image score (whether
the border sets the good images' scores).

Run: PYTHONPATH=src .venv/bin/python benchmarks/per_defect_type.py magnetic_tile patchcore padim
(default methods and Detector defaults: 10% of train/good held out for the threshold; a method
may carry Detector parameters as JSON: 'patchcore:{"layers": ["s8", "s16", "s32"]}'; a path to
a saved ``.oddeye`` file is scored as it is, without fitting). Quoted in docs/methods.md and
docs/rd4ad.md.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

import oddeye
from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.evaluation import auroc_by_type
from oddeye.metrics.functional import auroc
from oddeye.preprocess import resize_mask


def main(dataset: str, methods: list[str]) -> None:
    torch.set_num_threads(2)
    cat = load_dataset(shared_root() / DATASETS[dataset])[0]
    tests = cat.test
    types = np.array([s.defect_type for s in tests])
    labels = (types != "good").astype(int)
    for spec in methods:
        if spec.endswith(".oddeye"):
            det = oddeye.load(spec)
        else:
            method, _, params = spec.partition(":")  # 'patchcore:{"layers": ["s8", "s32"]}'
            det = Detector(method=method, **(json.loads(params) if params else {})).fit(
                [s.path for s in cat.train], progress=False)
        scores, maps, masks = [], [], []
        starts = range(0, len(tests), det.batch_size)
        for start, pred in zip(starts, det.iter_predict([s.path for s in tests]), strict=True):
            scores.append(pred.scores)
            maps.append(pred.maps.astype(np.float32))
            batch = tests[start:start + det.batch_size]
            masks += [resize_mask(load_sample_mask(s, (h, w)), det.size).astype(bool)
                      for s, (h, w) in zip(batch, pred.original_sizes, strict=True)]
        score, pixel, gt = np.concatenate(scores), np.concatenate(maps), np.stack(masks)
        row = auroc_by_type(score, labels, types)
        cells = ", ".join(f"{t} {v:.3f}" for t, v in row.items())
        print(f"{spec}: image AUROC all {auroc(score, labels):.3f}; {cells}", flush=True)
        good, total = types == "good", gt.sum()
        cells = []
        for t in row:
            keep = good | (types == t)
            cells.append(f"{t} {auroc(pixel[keep].ravel(), gt[keep].ravel()):.3f} "
                         f"({gt[types == t].sum() / total:.0%} of defect pixels)")
        print(f"{spec}: pixel AUROC all {auroc(pixel.ravel(), gt.ravel()):.3f}; "
              + ", ".join(cells), flush=True)
        edge = border_distance(pixel.reshape(len(pixel), -1).argmax(1), pixel.shape[-2:])
        cells = [f"{r} px {auroc(pixel[:, r:-r, r:-r].reshape(len(pixel), -1).max(1), labels):.3f}"
                 for r in RING_PX]
        print(f"{spec}: good images whose maximum lies within 16 px of the edge "
              f"{np.mean(edge[good] < 16):.0%} (defective {np.mean(edge[~good] < 16):.0%}); "
              "image AUROC with the outer ring left out of the score: " + ", ".join(cells),
              flush=True)


#: widths of the border ring left out of the image score in the border diagnosis
RING_PX = (8, 16, 32)


def border_distance(flat_index: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Distance in pixels from each flat map index to the nearest image edge."""
    rows, cols = np.divmod(flat_index, shape[1])
    return np.minimum(np.minimum(rows, shape[0] - 1 - rows), np.minimum(cols, shape[1] - 1 - cols))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["patchcore"])
