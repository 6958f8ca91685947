"""PatchCore's reduced search (``search_dim``) on the selection suite's validation-only data.

Run: .venv/bin/python benchmarks/patchcore_search_dim.py (section
``selection-patchcore-search-dim`` of RESULTS.md; numbers quoted in docs/methods.md).
"""

from oddeye.bench.selection_suite import run

CANDIDATES = {"default (exact, 128-d)": {},
              "search_dim 64 (+residual)": {"search_dim": 64},
              "search_dim 32 (+residual)": {"search_dim": 32},
              "search_dim 16 (+residual)": {"search_dim": 16}}

if __name__ == "__main__":
    print(run(candidates=CANDIDATES, section="selection-patchcore-search-dim"))
