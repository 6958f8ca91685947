"""Diagnosis on a test split (chooses nothing): does scoring each image against the patches of
its nearest *training images* (SPADE's two-step kNN, Cohen & Hoshen 2020) see defects that a
bank pooled over all training images misses?

magnetic_tile's "uneven" regions are another surface finish that is normal on other tiles, so
every patch inside one has a twin in a pooled bank. If tiles of one finish look alike as a
whole, the nearest training images of a plain tile are plain ones, and a streaked region of it
has no twin among their patches. Variants, one pipeline (MobileNetV2 s8+s16, 3x3 aggregation,
layer weighting, as PatchCore's default embedding):

- ``bank``: the library's 10k coreset over all training patches (PatchCore, position-free);
- ``knnK``: per test image, all patches of the K training images whose mean embedding is
  nearest to its own; ``randK``: all patches of K random training images (is it the choice of
  images, or only a denser bank than the coreset?); ``+pos3`` on any adds PatchCore's position
  columns at weight 3; ``A|B``: the sum of the two variants' maps.

Maps upsampled to 256 and blurred (sigma 4) for pixel AUROC; image score: largest raw patch
distance. Run:
``.venv/bin/python benchmarks/patchcore_image_neighbours.py magnetic_tile [CACHE.pt [VARIANT...]]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oddeye.backbones.features import FeatureExtractor
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.methods.coreset import coreset_indices
from oddeye.methods.neighbours import nearest_distance
from oddeye.methods.patchcore import aggregate, flat_patches, with_position
from oddeye.metrics.functional import auroc
from oddeye.postprocess import gaussian_blur, upsample
from oddeye.preprocess import Normalize, load_resized, resize_mask, to_batch


def embed_all(paths: list, fx: FeatureExtractor, norm: Normalize, bs: int = 4) -> torch.Tensor:
    """(N, D, h, w) position-free PatchCore embeddings of the images at 256 px."""
    out = []
    for i in range(0, len(paths), 32):
        x = to_batch(load_resized(paths[i:i + 32], 256))
        with torch.inference_mode():
            out += [aggregate(fx(norm(x[j:j + bs])), ["s8", "s16"], 3, True)
                    for j in range(0, len(x), bs)]
    return torch.cat(out)


def main(dataset: str, cache: str | None = None, *variants: str) -> None:
    """Print each variant's image / pixel AUROC, overall and per defect type; ``cache``: a file
    that keeps the embeddings between runs."""
    variants = variants or ("bank", "knn5", "knn20", "knn50", "bank+pos3", "knn20+pos3")
    torch.set_num_threads(2)
    cat = load_dataset(shared_root() / DATASETS[dataset])[0]
    fx, norm = FeatureExtractor("mobilenet_v2", ["s8", "s16"]), Normalize()
    t0 = time.perf_counter()
    if cache and Path(cache).exists():
        train, test = torch.load(cache)
    else:
        train = embed_all([s.path for s in cat.train], fx, norm)
        test = embed_all([s.path for s in cat.test], fx, norm)
        if cache:
            torch.save((train, test), cache)
    print(f"features {time.perf_counter() - t0:.0f} s", flush=True)
    kinds = np.array([s.path.parent.name for s in cat.test])
    labels = kinds != "good"
    masks = np.stack([resize_mask(load_sample_mask(s, Image.open(s.path).size[::-1]), 256)
                      for s in cat.test]) > 0
    g_train, g_test = train.mean((2, 3)), test.mean((2, 3))  # one descriptor per image
    h, w = train.shape[-2:]

    def report(name: str, maps: torch.Tensor) -> None:
        scores = maps.flatten(1).amax(1).numpy()
        up = gaussian_blur(upsample(maps, (256, 256)), 4.0).numpy()
        line = [f"{name:12s} image {auroc(scores, labels):.3f} pixel {auroc(up, masks):.3f}"]
        for kind in sorted(set(kinds) - {"good"}):
            keep = (kinds == kind) | ~labels
            line.append(f"{kind} {auroc(scores[keep], labels[keep]):.3f}/"
                        f"{auroc(up[keep], masks[keep]):.3f}")
        print("  ".join(line), flush=True)

    order = torch.cdist(g_test, g_train).argsort(1)
    rand = torch.stack([torch.randperm(len(train), generator=torch.Generator().manual_seed(i))
                        for i in range(len(test))])
    done: dict[str, torch.Tensor] = {}

    def maps_of(name: str) -> torch.Tensor:
        if name not in done:
            done[name] = compute(name)
        return done[name]

    def compute(name: str) -> torch.Tensor:
        if "|" in name:  # the sum of the parts' maps
            return sum(maps_of(part) for part in name.split("|"))
        weight = 3.0 if name.endswith("+pos3") else 0.0
        base = name.removesuffix("+pos3")
        tr = with_position(train, weight) if weight else train
        te = with_position(test, weight) if weight else test
        if base == "bank":
            patches = flat_patches(tr)
            bank = patches[coreset_indices(patches, 10_000, seed=0)].contiguous()
            bank_sq = (bank * bank).sum(1)
            maps = torch.cat([nearest_distance(flat_patches(te[i:i + 64]), bank, bank_sq)
                              for i in range(0, len(te), 64)]).view(-1, h, w)
        else:  # knnK: the K nearest images; randK: K random images (density alone)
            k, pick = (int(base[3:]), order) if base.startswith("knn") else (int(base[4:]), rand)
            out = []
            for i in range(te.shape[0]):
                nb = flat_patches(tr[pick[i, :k]])
                dist = nearest_distance(flat_patches(te[i:i + 1]), nb, (nb * nb).sum(1))
                out.append(dist.view(h, w))
            maps = torch.stack(out)
        return maps

    for name in variants:
        report(name, maps_of(name))


if __name__ == "__main__":
    main(*sys.argv[1:])
