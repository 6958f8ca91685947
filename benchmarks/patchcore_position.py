"""PatchCore's position term (``position``) on the selection suite's validation-only data.

Run: .venv/bin/python benchmarks/patchcore_position.py (section ``selection-patchcore-position``
of RESULTS.md; numbers quoted in docs/methods.md). The weights form a log grid fixed before
the first run; the `auto` row (added after it, when auto became the default) shows whether the
per-set choice, made on held-out images of the fit set, lands on the best fixed weight here.
"""

from oddeye.bench.selection_suite import run

CANDIDATES = {"no position": {"position": 0.0},
              "position 1": {"position": 1.0},
              "position 3": {"position": 3.0},
              "position 10": {"position": 10.0},
              # the default since: chooses 0, 1 or 3 on its own held-out share of the fit images
              "position auto (default)": {"position": "auto"}}

if __name__ == "__main__":
    print(run(candidates=CANDIDATES, section="selection-patchcore-position"))
