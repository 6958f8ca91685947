"""PatchCore's input size chosen on validation data: 256 px (the protocol) vs 512 px.

The selection suite with its real validation images kept at their own resolution
(``native=True``): each candidate resizes them and their pseudo-defects itself, so a defect a few
pixels wide stays as small relative to the part as it was drawn. The Gaussian scales with the
size (sigma 8 at 512 px), so both maps are smoothed over the same share of the part. No test
split is read. Writes section ``selection-resolution``.

Run: .venv/bin/python benchmarks/resolution_selection.py
"""

from __future__ import annotations

import sys

from oddeye.bench.selection_suite import run

CANDIDATES = {"256 px, sigma 4 (protocol)": {"size": 256, "sigma": 4.0},
              "512 px, sigma 8": {"size": 512, "sigma": 8.0}}

if __name__ == "__main__":
    print(run(method="patchcore", candidates=CANDIDATES, section="selection-resolution",
              native=True))
    sys.exit(0)
