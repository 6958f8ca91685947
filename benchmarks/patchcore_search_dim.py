"""PatchCore's reduced search (``search_dim``, ``rerank``) on the selection suite's validation data.

Run: .venv/bin/python benchmarks/patchcore_search_dim.py (section
``selection-patchcore-search-dim`` of RESULTS.md; numbers quoted in docs/methods.md).
"""

from oddeye.bench.selection_suite import run

CANDIDATES = {"default (exact, 128-d)": {},
              "search_dim 64 (+residual)": {"search_dim": 64},
              "search_dim 32 (+residual)": {"search_dim": 32},
              "search_dim 16 (+residual)": {"search_dim": 16},
              "search_dim 64, rerank": {"search_dim": 64, "rerank": True},
              "search_dim 32, rerank": {"search_dim": 32, "rerank": True},
              "search_dim 16, rerank": {"search_dim": 16, "rerank": True}}

if __name__ == "__main__":
    print(run(candidates=CANDIDATES, section="selection-patchcore-search-dim"))
