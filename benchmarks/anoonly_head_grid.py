"""The AnoOnly image head against PatchCore with both on the s16 patch grid (``grid="last"``).

The ``anoonly-image`` suite (K labelled defects, removed from every method's test split) with
``grid="last"`` for PatchCore and both heads: the head's prior is PatchCore, so a user who
chose the coarser grid for PatchCore gets it in the head too. Test splits, reported only (the
grid is an option; docs/methods.md "Patch grid"). Writes section ``anoonly-image-grid-last``.
Run: ``.venv/bin/python benchmarks/anoonly_head_grid.py [--datasets magnetic_tile ...]``.
"""

import argparse

from oddeye.bench.anoonly_image_suite import run
from oddeye.bench.detection_suite import DATASETS

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=None)
    args = ap.parse_args()
    run(datasets=args.datasets, params={"grid": "last"}, section="anoonly-image-grid-last")
