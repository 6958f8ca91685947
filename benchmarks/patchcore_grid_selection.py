"""Validation-only choice of PatchCore's patch grid (no test split used).

Candidates, everything else at its default: the paper's grid, the cells of the first (finest)
tap, s8 (default); and the cells of the last tap, s16, with s8 averaged over each 2 x 2 block
(``grid="last"``). Writes section ``selection-patchcore-grid`` (``-seed<S>``, ``-anywhere`` as
every selection script).
Run: ``.venv/bin/python benchmarks/patchcore_grid_selection.py [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "grid first (s8 cells, default)": {},
    "grid last (s16 cells)": {"grid": "last"},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("patchcore", "selection-patchcore-grid", CANDIDATES, args.seed, args.placement,
               **seed_kwargs(args))
