"""Per-position map standardisation (``map_norm``) on the selection suite's validation-only data.

Run: .venv/bin/python benchmarks/map_norm_selection.py (section ``selection-map-norm`` of
RESULTS.md; quoted in docs/methods.md). With ``map_norm`` a fifth of the fitting images is held
out for the statistics, so those candidates fit on 80 images where the others fit on 100.
"""

from oddeye.bench.selection_suite import run

NORM = {"map_norm": "position", "holdout": 0.2}
CANDIDATES = {"patchcore": {"map_norm": None},
              "patchcore, map_norm": NORM,
              "padim": {"method": "padim", "map_norm": None},
              "padim, map_norm": {"method": "padim", **NORM}}

if __name__ == "__main__":
    print(run(candidates=CANDIDATES, section="selection-map-norm"))
