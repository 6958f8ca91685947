"""Validation-only check (no test split used) of RD4AD with stochastic weight averaging over the
last quarter of the fit's optimiser steps (``average_from=0.75``; BatchNorm statistics then
recomputed by the precise-BN pass), against today's default. Only the candidate is fitted here:
its first baseline was the ``spread`` row of section ``selection-rd4ad-stage-weights`` (the
same code path when averaging is off), but fits do not reproduce bit for bit on another
machine, so the default was refitted beside it (``rd4ad_average_baseline.py``, section
``selection-rd4ad-average-baseline``). Writes section ``selection-rd4ad-average``
(``-seed<S>`` with ``--seed S`` other than 0). Run: ``.venv/bin/python
benchmarks/rd4ad_average_selection.py [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("rd4ad", "selection-rd4ad-average",
               {"weights averaged over the last 25% of steps": {"average_from": 0.75}},
               args.seed, args.placement, **seed_kwargs(args))
