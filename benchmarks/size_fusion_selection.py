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

SIZES = (256, 384)
ROWS = (*(f"{s} px" for s in SIZES), "fused")


def fused_rows(fit: list, good: list, images: list, labels: np.ndarray, masks: np.ndarray,
               seed: int) -> dict[str, dict]:
    """Each size's metrics (its own image score, maps at 256 px) and the standardised sum's."""
    out, z = {}, []
    for size, row in zip(SIZES, ROWS, strict=False):
        out[row], zs = member_result(
            lambda size=size: Detector(method="patchcore", size=size, holdout=0,
                                       seed=seed).fit(fit, progress=False),
            good, images, labels, masks, size=SIZES[0])
        z.append(zs)
    out["fused"] = fused_result(z, labels, masks)
    return out


def render(seed: int, rows: dict[str, dict[str, dict]]) -> str:
    title = (f"PatchCore (MobileNetV2, defaults) at {SIZES[0]} and {SIZES[1]} px fused at the "
             f"map level, validation split, fit seed {seed} "
             f"(`benchmarks/size_fusion_selection.py`): image AUROC (each size's own raw-max "
             f"score; the fusion's smoothed-map max) / pixel AUROC / AUPRO@0.3, maps at "
             f"{SIZES[0]} px.")
    secs = [median_seconds(rows, r) for r in ROWS[:2]]
    return "\n".join([*fusion_table(title, rows, ROWS), "",
                      f"Median fit + scoring seconds per set: {secs[0]} ({ROWS[0]}), {secs[1]} "
                      f"({ROWS[1]}); the fusion costs both."])


if __name__ == "__main__":
    run_validation(__doc__, "selection-size-fusion", fused_rows, render)
