"""Validation-only check (no test split used): does PatchCore's threshold hold-out cost
detection? Without ``validation/good`` a fit scores a tenth of its good images for the threshold
and keeps them out of the bank; the paired image suite (docs/semisup.md) fits every image and
scored higher on some test splits (magnetic_tile with ``grid="last"`` 0.960 against 0.947).
Candidates: the bank from every fitting image (``holdout`` 0, the suite's usual fit) and a
tenth held out (``holdout`` 0.1, what ``Detector`` does by default). Writes section
``selection-patchcore-holdout`` (``-full`` with ``--max-fit 0``, ``-seed<S>`` with ``--seed
S``). Run: ``.venv/bin/python benchmarks/patchcore_holdout_selection.py --max-fit 0 [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("patchcore", "selection-patchcore-holdout",
               {"bank from every fitting image": {"holdout": 0.0},
                "a tenth held out for the threshold (Detector's default)": {"holdout": 0.1}},
               args.seed, args.placement, **seed_kwargs(args))
