"""Validation-only choice (no test split used) of PaDiM's covariance estimate, second candidate:
the paper's sample covariance against shrinkage towards its own diagonal (Schafer & Strimmer
2005, target D: covariances between channels shrunk, each channel's variance kept; both plus
``eps * I``). Tried after Ledoit-Wolf's identity target lost (section
``selection-padim-covariance``), whose single variance for every channel raises the quiet
channels' variance. Both are fitted in the same run. Writes section
``selection-padim-diagonal`` (``-seed<S>`` with ``--seed S`` other than 0). Run:
``.venv/bin/python benchmarks/padim_diagonal_selection.py [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("padim", "selection-padim-diagonal",
               {"sample covariance (default, the paper's)": {"covariance": "sample"},
                "diagonal shrinkage": {"covariance": "diagonal_shrinkage"}},
               args.seed, args.placement, **seed_kwargs(args))
