"""Validation-only comparison of PatchCore's chunked coreset with the exact greedy loop.

Candidates, everything else at its default (16-px frame): independent chunks (default) and the
exact greedy k-center loop (``chunk_size=None``), which on the test splits moved magnetic_tile's
localisation most (section ``patchcore-throwaway``, measured without the frame). The two differ
only at full scale, so run it with ``--max-fit 0``; the exact loop takes minutes per fit on a
CPU (seconds on a GPU). Writes section ``selection-patchcore-exact-coreset`` (``-full``,
``-seed<S>``). Run: ``.venv/bin/python benchmarks/patchcore_exact_coreset_selection.py
--max-fit 0 [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "independent chunks (default)": {},
    "exact greedy loop": {"chunk_size": None},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("patchcore", "selection-patchcore-exact-coreset", CANDIDATES, args.seed,
               args.placement, **seed_kwargs(args))
