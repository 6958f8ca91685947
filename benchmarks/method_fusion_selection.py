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

import sys

import numpy as np

from oddeye.api import Detector

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from map_fusion import (  # noqa: E402
    fused_result,
    fusion_table,
    median_seconds,
    member_result,
    run_validation,
)

METHODS = ("patchcore", "padim")
ROWS = (*METHODS, "fused")


def fused_rows(fit: list, good: list, images: list, labels: np.ndarray, masks: np.ndarray,
               seed: int) -> dict[str, dict]:
    """Each method's metrics (its own image score) and those of the standardised sum."""
    out, z = {}, []
    for m in METHODS:
        out[m], zm = member_result(
            lambda m=m: Detector(method=m, holdout=0, seed=seed).fit(fit, progress=False),
            good, images, labels, masks)
        z.append(zm)
    out["fused"] = fused_result(z, labels, masks)
    return out


def render(seed: int, rows: dict[str, dict[str, dict]]) -> str:
    title = (f"PatchCore and PaDiM (MobileNetV2, defaults) fused at the map level, validation "
             f"split, fit seed {seed} (`benchmarks/method_fusion_selection.py`): image AUROC "
             f"(each method's own image score; the fusion's smoothed-map max) / pixel AUROC / "
             f"AUPRO@0.3.")
    secs = [median_seconds(rows, m) for m in METHODS]
    return "\n".join([*fusion_table(title, rows, ROWS), "",
                      f"Median fit + scoring seconds per set: {secs[0]} (PatchCore), {secs[1]} "
                      f"(PaDiM); the fusion costs both heads on one backbone pass."])


if __name__ == "__main__":
    run_validation(__doc__, "selection-method-fusion", fused_rows, render)
