"""Validation-only choice of PatchCore's ``magnitude`` term (no test split used).

Under ``cosine`` (the default) patches are compared by the direction of each stage's vector;
``magnitude`` b adds each stage's length back as ``b * log|v|``, so the squared distance gains
the mean over stages of ``b^2 * log(|q| / |p|)^2``. Candidates: the default (b = 0) and
b = 0.5, 1, 2. Writes section ``selection-patchcore-magnitude-cosine`` (no candidate sets
``cosine``, so the suite names it for the cosine default; ``-seed<S>``, ``-full`` as every
selection script).
Run: ``.venv/bin/python benchmarks/patchcore_magnitude_selection.py [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "default": {},
    "magnitude 0.5": {"magnitude": 0.5},
    "magnitude 1": {"magnitude": 1.0},
    "magnitude 2": {"magnitude": 2.0},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("patchcore", "selection-patchcore-magnitude", CANDIDATES, args.seed,
               args.placement, **seed_kwargs(args))
