"""Validation-only check of two methods fused at the map level on one backbone (MobileNetV2):
PatchCore and PaDiM, each smoothed map standardised by the mean and standard deviation of its
maps of a seeded tenth of the fitting images kept out of both fits, summed; image score the
fused map's maximum. Nothing in oddeye builds this; the run decides whether it is worth
building (rule in docs/methods.md, "Two methods fused").

Rows: PatchCore and PaDiM as users get them (each its own image score: PatchCore the raw
maximum, PaDiM the smoothed one), fitted on the same images, and the fusion. Writes section
``selection-method-fusion`` (``-seed<S>``). Run: ``.venv/bin/python
benchmarks/method_fusion_selection.py [--seed S] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np

from oddeye.api import Detector
from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.metrics import evaluate

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from patchcore_backbone_fusion import validation_sets  # noqa: E402

METHODS = ("patchcore", "padim")
ROWS = (*METHODS, "fused")


def fused_rows(fit: list, good: list, images: list, labels: np.ndarray, masks: np.ndarray,
               seed: int) -> dict[str, dict]:
    """Each method's metrics (its own image score) and those of the standardised sum."""
    out, z = {}, {}
    for m in METHODS:
        t0 = time.perf_counter()
        det = Detector(method=m, holdout=0, seed=seed).fit(fit, progress=False)
        g = det.predict(good).maps
        mu, sd = float(g.mean()), float(g.std())
        preds = [det.predict(images[i:i + 16]) for i in range(0, len(images), 16)]
        maps = np.concatenate([p.maps for p in preds])
        scores = np.concatenate([p.scores for p in preds])
        z[m] = (maps - mu) / sd
        out[m] = evaluate(scores, labels, maps, masks)
        out[m]["seconds"] = time.perf_counter() - t0
    f = z[METHODS[0]] + z[METHODS[1]]
    out["fused"] = evaluate(f.reshape(len(f), -1).max(1), labels, f, masks)
    return out


def render(seed: int, rows: dict[str, dict[str, dict]]) -> str:
    names = list(rows)
    lines = [f"PatchCore and PaDiM (MobileNetV2, defaults) fused at the map level, validation "
             f"split, fit seed {seed} (`benchmarks/method_fusion_selection.py`): image AUROC "
             f"(each method's own image score; the fusion's smoothed-map max) / pixel AUROC / "
             f"AUPRO@0.3.", "",
             "| set | " + " | ".join(ROWS) + " |", "| --- |" + " --- |" * len(ROWS)]
    for n in names:
        cells = [f"{rows[n][r]['image_auroc']:.4f} / {rows[n][r]['pixel_auroc']:.4f} / "
                 f"{rows[n][r]['pixel_aupro']:.4f}" for r in ROWS]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    means = [f"{np.mean([rows[n][r]['image_auroc'] for n in names]):.4f} / "
             f"{np.mean([rows[n][r]['pixel_auroc'] for n in names]):.4f}" for r in ROWS]
    lines.append("| mean image / pixel | " + " | ".join(means) + " |")
    secs = [f"{np.median([rows[n][m]['seconds'] for n in names]):.0f}" for m in METHODS]
    lines += ["", f"Median fit + scoring seconds per set: {secs[0]} (PatchCore), {secs[1]} "
                  f"(PaDiM); the fusion costs both heads on one backbone pass."]
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
    write_section("selection-method-fusion" + (f"-seed{args.seed}" if args.seed else ""),
                  body, args.out or DEFAULT_RESULTS)
    print(body)
    return body


if __name__ == "__main__":
    main()
