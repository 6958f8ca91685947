"""Validation-only choice of how PatchCore compares patches (no test split used).

Candidates, everything else at its default: each stage's aggregated vector as the backbone
gives it, scaled by ``1/sqrt(channels)`` (``cosine=False``, the default until the twenty-seventh
session), and at unit length, so patches are compared by direction (``cosine=True``, the default
since; the row "default" is the default when the choice was made). Writes section
``selection-patchcore-cosine`` (``-seed<S>``, ``-full`` as every selection script).
Run: ``.venv/bin/python benchmarks/patchcore_cosine_selection.py [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "default": {"cosine": False},
    "stages L2-normalised (cosine)": {"cosine": True},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("patchcore", "selection-patchcore-cosine", CANDIDATES, args.seed, args.placement,
               **seed_kwargs(args))
