"""Coreset benchmark: chunked greedy selection vs the exact loop, in time and in accuracy.

Part 1 times 10% of 200k random 128-d patches (the size of a 200-image bank at 256 px) with the
default chunked selection and with the exact greedy loop, and compares their covering radius (the
k-center objective: the largest distance of any patch to its nearest centre). Part 2 does the same
for PatchCore's default bank (10,000 centres, its cap) on a real set's training patches, where the
share per chunk is far smaller. Part 3 fits PatchCore on that set with both selections and
compares the test metrics.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from oddeye.methods.coreset import coreset_indices

#: (label, chunk_size, sequential) of the selections compared
SELECTIONS = [("chunked (default, 16384)", 16384, False),
              ("sequential chunks (16384)", 16384, True), ("exact greedy", None, False)]


def nearest_centre_distances(x: torch.Tensor, idx: torch.Tensor, chunk: int = 8192
                             ) -> torch.Tensor:
    """Distance of every point to its nearest selected point."""
    from oddeye.methods.neighbours import nearest_distance

    bank = x[idx]
    sq = (bank * bank).sum(1)
    return torch.cat([nearest_distance(x[s:s + chunk], bank, sq)
                      for s in range(0, x.shape[0], chunk)])


def covering_radius(x: torch.Tensor, idx: torch.Tensor, chunk: int = 8192) -> float:
    """max over points of the distance to the nearest selected point (k-center objective)."""
    return float(nearest_centre_distances(x, idx, chunk).max())


def training_patches(root: Path) -> torch.Tensor:
    """PatchCore's default (N, 128) patch embeddings of a category's ``train/good`` images."""
    from oddeye.api import default_pad
    from oddeye.backbones import FeatureExtractor
    from oddeye.data.mvtec import load_dataset
    from oddeye.methods import TrainSet, create_method
    from oddeye.methods.base import attach_frame
    from oddeye.methods.patchcore import training_patches as patches_of
    from oddeye.preprocess import Normalize, load_resized, to_batch

    cat = load_dataset(root)[0]
    method = create_method("patchcore")
    ext = FeatureExtractor(method.backbone, list(method.layers), pad=default_pad(method))
    data = TrainSet(images=to_batch(load_resized([s.path for s in cat.train], 256)),
                    extractor=ext, normalize=Normalize(), progress=False)
    head = method.build_head(ext.channels, ext.strides)
    attach_frame(method, ext, head)
    with torch.inference_mode():
        return patches_of(head, data)


def run(out_path: str | Path | None = None, n: int = 200_000, dim: int = 128,
        ratio: float = 0.1, data: str | None = None) -> str:
    """Write the ``coreset`` section of RESULTS.md and return it."""
    from oddeye.bench.detection_suite import shared_root
    from oddeye.bench.results import DEFAULT_RESULTS, write_section

    g = torch.Generator().manual_seed(0)
    # clustered patches, like real features: 500 centres with anisotropic spread
    centres = torch.randn(500, dim, generator=g) * 3
    x = centres[torch.randint(500, (n,), generator=g)] + torch.randn(n, dim, generator=g)
    k = round(ratio * n)
    rows = []
    for label, chunk, seq in SELECTIONS:
        t0 = time.perf_counter()
        idx = coreset_indices(x, k, proj_dim=128, chunk_size=chunk, sequential=seq)
        sec = time.perf_counter() - t0
        rows.append((label, sec, covering_radius(x, idx)))
    lines = ["## Coreset selection", "",
             f"{k} of {n} random clustered {dim}-d patches (10%):", "",
             "| selection | seconds | covering radius |", "|---|---|---|"]
    lines += [f"| {lab} | {sec:.1f} | {rad:.3f} |" for lab, sec, rad in rows]
    ds = Path(data) if data else shared_root() / "mvtec3d_tire"
    if ds.exists():
        from oddeye.api import Detector
        from oddeye.data.mvtec import load_dataset
        from oddeye.evaluation import evaluate_category
        from oddeye.methods.patchcore import PatchCore

        patches = training_patches(ds)
        cap = PatchCore().max_bank
        lines += ["", f"{cap} of the {patches.shape[0]} training patches of `{ds.name}` "
                  f"({100 * cap / patches.shape[0]:.1f}%; PatchCore's default bank: its cap), "
                  "distance of every training patch to its nearest centre:", "",
                  "| selection | seconds | max (covering radius) | 99th percentile | mean |",
                  "|---|---|---|---|---|"]
        for label, chunk, seq in SELECTIONS:
            t0 = time.perf_counter()
            idx = coreset_indices(patches, cap, chunk_size=chunk, sequential=seq)
            sec = time.perf_counter() - t0
            d = nearest_centre_distances(patches, idx)
            lines.append(f"| {label} | {sec:.1f} | {float(d.max()):.3f} | "
                         f"{float(torch.quantile(d[::max(1, d.numel() // 1_000_000)], 0.99)):.3f}"
                         f" | {float(d.mean()):.3f} |")
        cat = load_dataset(ds)[0]
        lines += ["", f"PatchCore (mobilenet_v2, s8+s16, default bank) on `{cat.name}`:", "",
                  "| selection | fit s | image AUROC | pixel AUROC | AUPRO@0.3 |",
                  "|---|---|---|---|---|"]
        for label, chunk, seq in SELECTIONS:
            det = Detector(method="patchcore", chunk_size=chunk, sequential_chunks=seq)
            det.fit([s.path for s in cat.train],
                    validation=[s.path for s in cat.validation] or None, progress=False)
            r = evaluate_category(det, cat, progress=False)
            lines.append(f"| {label} | {det.fit_seconds_:.1f} | {r['image_auroc']:.3f} | "
                         f"{r['pixel_auroc']:.3f} | {r['pixel_aupro']:.3f} |")
    body = "\n".join(lines)
    write_section("coreset", body, out_path or DEFAULT_RESULTS)
    return body
