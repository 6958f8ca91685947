"""PatchCore's position term (``position``) on the selection suite's validation-only data.

Run: .venv/bin/python benchmarks/patchcore_position.py (section ``selection-patchcore-position``
of RESULTS.md; numbers quoted in docs/methods.md). The weights form a log grid fixed before
the run.
"""

from oddeye.bench.selection_suite import run

CANDIDATES = {"default (no position)": {},
              "position 1": {"position": 1.0},
              "position 3": {"position": 3.0},
              "position 10": {"position": 10.0}}

if __name__ == "__main__":
    print(run(candidates=CANDIDATES, section="selection-patchcore-position"))
