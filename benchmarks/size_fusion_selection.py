"""Validation-only check of one method at two input sizes fused at the map level: PatchCore
(MobileNetV2, defaults) at 256 and at 384 px, each smoothed map (the 384-px one resized to 256,
bilinear) standardised by the mean and standard deviation of its maps of a seeded tenth of the
fitting images kept out of both fits, summed; image score the fused map's maximum. Nothing in
oddeye builds this; the run decides whether it is worth building (docs/methods.md, "Two input
sizes fused").

Rows: PatchCore at each size as users get it (its own raw-maximum image score, maps at 256 px
for the metrics), fitted on the same images, and the fusion. Writes section
``selection-size-fusion`` (``-seed<S>``). Run: ``.venv/bin/python
benchmarks/size_fusion_selection.py [--seed S] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from oddeye.api import Detector
from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.metrics import evaluate

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from patchcore_backbone_fusion import validation_sets  # noqa: E402

SIZES = (256, 384)
ROWS = (*(f"{s} px" for s in SIZES), "fused")


def at(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) maps resized (bilinear) to (N, size, size)."""
    if maps.shape[-1] == size:
        return maps
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


def fused_rows(fit: list, good: list, images: list, labels: np.ndarray, masks: np.ndarray,
               seed: int) -> dict[str, dict]:
    """Each size's metrics (its own image score, maps at 256 px) and the standardised sum's."""
    out, z = {}, {}
    for size, row in zip(SIZES, ROWS, strict=False):
        t0 = time.perf_counter()
        det = Detector(method="patchcore", size=size, holdout=0, seed=seed).fit(fit,
                                                                               progress=False)
        g = at(det.predict(good).maps, SIZES[0])
        mu, sd = float(g.mean()), float(g.std())
        preds = [det.predict(images[i:i + 16]) for i in range(0, len(images), 16)]
        maps = at(np.concatenate([p.maps for p in preds]), SIZES[0])
        scores = np.concatenate([p.scores for p in preds])
        z[size] = (maps - mu) / sd
        out[row] = evaluate(scores, labels, maps, masks)
        out[row]["seconds"] = time.perf_counter() - t0
    f = sum(z.values())
    out["fused"] = evaluate(f.reshape(len(f), -1).max(1), labels, f, masks)
    return out


def render(seed: int, rows: dict[str, dict[str, dict]]) -> str:
    names = list(rows)
    lines = [f"PatchCore (MobileNetV2, defaults) at {SIZES[0]} and {SIZES[1]} px fused at the map "
             f"level, validation split, fit seed {seed} (`benchmarks/size_fusion_selection.py`): "
             f"image AUROC (each size's own raw-max score; the fusion's smoothed-map max) / pixel "
             f"AUROC / AUPRO@0.3, maps at {SIZES[0]} px.", "",
             "| set | " + " | ".join(ROWS) + " |", "| --- |" + " --- |" * len(ROWS)]
    for n in names:
        cells = [f"{rows[n][r]['image_auroc']:.4f} / {rows[n][r]['pixel_auroc']:.4f} / "
                 f"{rows[n][r]['pixel_aupro']:.4f}" for r in ROWS]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    means = [f"{np.mean([rows[n][r]['image_auroc'] for n in names]):.4f} / "
             f"{np.mean([rows[n][r]['pixel_auroc'] for n in names]):.4f}" for r in ROWS]
    lines.append("| mean image / pixel | " + " | ".join(means) + " |")
    secs = [f"{np.median([rows[n][r]['seconds'] for n in names]):.0f}" for r in ROWS[:2]]
    lines += ["", f"Median fit + scoring seconds per set: {secs[0]} ({ROWS[0]}), {secs[1]} "
                  f"({ROWS[1]}); the fusion costs both."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="results file (default benchmarks/RESULTS.md)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for name, (fit, good, imgs, y, ms) in validation_sets(args.seed, tmp).items():
            rows[name] = fused_rows(fit, good, imgs, y, ms, args.seed)
            print(name, {r: round(v["image_auroc"], 4) for r, v in rows[name].items()},
                  file=sys.stderr, flush=True)
    body = render(args.seed, rows)
    write_section("selection-size-fusion" + (f"-seed{args.seed}" if args.seed else ""),
                  body, args.out or DEFAULT_RESULTS)
    print(body)
    return body


if __name__ == "__main__":
    main()
