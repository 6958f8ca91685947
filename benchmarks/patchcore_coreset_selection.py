"""Validation-only choice of PatchCore's coreset chunk order (no test split used).

Candidates, everything else at its default: independent chunks (default) and sequential chunks
(``sequential_chunks=True``: each chunk's greedy loop starts from the distances to the centres
the earlier chunks chose, closer to the exact loop's coverage; docs/methods.md). The two only
differ when a fit has many chunks, i.e. at full scale: run it with ``--max-fit 0``. Writes
section ``selection-patchcore-coreset`` (``-full``, ``-seed<S>``, as every selection script).
Run: ``.venv/bin/python benchmarks/patchcore_coreset_selection.py --max-fit 0 [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "independent chunks (default)": {},
    "sequential chunks": {"sequential_chunks": True},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("patchcore", "selection-patchcore-coreset", CANDIDATES, args.seed, args.placement,
               **seed_kwargs(args))
