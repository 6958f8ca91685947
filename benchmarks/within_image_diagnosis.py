"""Diagnostic (test split, chooses nothing): can a model tell *which part* of a defective image
is the defect? Per-image pixel AUROC (the image's defect pixels against its other pixels) over
the images of one defect type, for each model variant given and for a model-free
reference: the length of the raw patch embedding itself (``cosine=False``, no bank, nothing
fitted to it). Pooled pixel AUROC mixes this with how much higher defective images score than
good ones; this isolates the within-image part. Images whose mask is empty or covers all of
it are skipped.

Run: .venv/bin/python benchmarks/within_image_diagnosis.py magnetic_tile uneven '{}' \\
     '{"cosine": false}' '{"magnitude": 2.0}' 'rd4ad:{}'   (each variant: Detector parameters as
JSON, PatchCore's unless prefixed ``method:``, fitted on all of ``train/good`` with the
Detector's defaults otherwise). Quoted in docs/methods.md ("Cosine patches") and
docs/rd4ad.md.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.metrics.functional import auroc
from oddeye.preprocess import load_resized, resize_mask, to_batch

QUANTILES = (10, 25, 50, 75, 90)
SIZE = 256  # the Detector's default input size: maps and masks compared there


def per_image_auroc(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N,) pixel AUROC of each (S, S) map against its own {0,1} mask."""
    return np.array([auroc(m.ravel(), k.ravel()) for m, k in zip(maps, masks, strict=True)])


def embedding_length_maps(det: Detector, paths: list) -> np.ndarray:
    """(N, S, S) length of each cell's aggregated patch embedding, upsampled (bilinear)."""
    model, out = det.model_, []
    for p in paths:
        x = to_batch(load_resized([p], det.size))
        with torch.inference_mode():
            emb = model.head.plain_embed(model.extractor(model.normalize(x)))
            n = F.interpolate(emb.norm(dim=1, keepdim=True), size=(det.size, det.size),
                              mode="bilinear", align_corners=False)
        out.append(n[0, 0].numpy())
    return np.stack(out)


def parse_variant(text: str) -> tuple[str, dict]:
    """``'{"cosine": false}'`` -> PatchCore with those parameters; ``'rd4ad:{...}'`` -> RD4AD."""
    method, sep, params = text.partition(":")
    if not sep or method.strip().startswith("{"):
        return "patchcore", json.loads(text)
    return method.strip(), json.loads(params or "{}")


def summary(name: str, a: np.ndarray) -> str:
    q = " / ".join(f"{v:.3f}" for v in np.percentile(a, QUANTILES))
    return f"| {name} | {q} | {np.mean(a < 0.5):.2f} |"


def main(dataset: str, defect_type: str, variants: list[str]) -> None:
    torch.set_num_threads(2)
    cat = load_dataset(shared_root() / DATASETS[dataset])[0]
    goods = [s.path for s in cat.train]
    samples, masks = [], []
    for s in cat.test:
        if s.defect_type != defect_type:
            continue
        with Image.open(s.path) as im:
            w, h = im.size
        m = resize_mask(load_sample_mask(s, (h, w)), SIZE)
        if 0 < m.mean() < 1:
            samples.append(s.path)
            masks.append(m)
    masks = np.stack(masks)
    print(f"{dataset} / {defect_type}: {len(samples)} images; per-image pixel AUROC, quantiles "
          f"{', '.join(map(str, QUANTILES))}; share below 0.5\n")
    print("| model | quantiles | < 0.5 |\n|---|---|---|")
    for v in variants or ["{}"]:
        method, params = parse_variant(v)
        det = Detector(method=method, size=SIZE, **params).fit(goods, progress=False)
        maps = det.predict(samples).maps
        print(summary(f"{method} {json.dumps(params)}", per_image_auroc(maps, masks)),
              flush=True)
    raw = Detector(method="patchcore", size=SIZE, cosine=False, position=0.0).fit(
        goods, progress=False)
    print(summary("length of the raw patch embedding (no bank)",
                  per_image_auroc(embedding_length_maps(raw, samples), masks)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
