"""Diagnostic: per-position standardisation variants of one fitted model, on validation data only.

Run: PYTHONPATH=src .venv/bin/python benchmarks/map_norm_variants.py METHOD SET... (METHOD
patchcore or rd4ad; SET tire, magnetic_tile, deeppcb). For each set: the selection suite's split
of train/good (fit / validation + pseudo-defects), a fifth of the fit part held out for the
statistics; one fit, then its raw maps standardised with held-out or training statistics (z,
minus mean, ratio). Prints image / pixel AUROC and AUPRO@0.3; quoted in docs/methods.md.
"""

from __future__ import annotations

import sys
import time

import torch

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.bench.selection_suite import validation_split
from oddeye.data.mvtec import load_dataset
from oddeye.metrics import evaluate
from oddeye.postprocess import position_stats, standardize
from oddeye.preprocess import load_resized, to_batch


def raw_maps(model, images) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model.raw_map(to_batch(images[i:i + 8]))
                          for i in range(0, len(images), 8)])


def variants(ev: torch.Tensor, refs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {"plain": ev}
    for name, ref in refs.items():
        mu, sd = ref.mean(0), ref.std(0)
        floor = sd.mean() * 0.1
        out[f"z {name}"] = standardize(ev, *position_stats(ref))  # what map_norm computes
        out[f"minus mean {name}"] = ev - mu
        out[f"ratio {name}"] = ev / (mu + floor)
    return out


def main(method: str, sets: list[str]) -> None:
    torch.set_num_threads(2)
    params = {"epochs": 40} if method == "rd4ad" else {}
    for ds in sets:
        cat = load_dataset(shared_root() / DATASETS[ds])[0]
        fit, imgs, y, masks = validation_split([s.path for s in cat.train], 256)
        n_stats = max(10, len(fit) // 5)
        fit_part, stats_part = fit[n_stats:], fit[:n_stats]
        t0 = time.time()
        det = Detector(method=method, holdout=0, map_norm=None, **params).fit(
            fit_part, progress=False)
        m = det.model_
        refs = {"held-out": raw_maps(m, load_resized(stats_part, 256)),
                "train": raw_maps(m, load_resized(fit_part[:40], 256))}
        for name, raw in variants(raw_maps(m, imgs), refs).items():
            with torch.inference_mode():
                maps, scores = m.post(raw)
            r = evaluate(scores.numpy(), y, maps.numpy(), masks)
            print(f"{method} {ds:14s} {name:22s} img {r['image_auroc']:.3f} "
                  f"px {r['pixel_auroc']:.3f} aupro {r['pixel_aupro']:.3f}  "
                  f"({len(fit_part)} fit, {n_stats} stats, {time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
