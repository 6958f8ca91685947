"""Validation-only choice (no test split used) of PaDiM's covariance estimate: the paper's sample
covariance against Ledoit-Wolf shrinkage towards a scaled identity (both plus ``eps * I``). Both
are fitted in the same run. Writes section ``selection-padim-covariance`` (``-seed<S>`` with
``--seed S`` other than 0). Run: ``.venv/bin/python benchmarks/padim_covariance_selection.py
[--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("padim", "selection-padim-covariance",
               {"sample covariance (default, the paper's)": {"covariance": "sample"},
                "Ledoit-Wolf shrinkage": {"covariance": "ledoit_wolf"}},
               args.seed, args.placement, **seed_kwargs(args))
