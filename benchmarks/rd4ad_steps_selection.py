"""Validation-only check of RD4AD's training length as a count of optimiser steps (no test split
used): 60 epochs (the default until this check: 420 steps on 100 fitting images, 120 on a
30-image synthetic class, while magnetic_tile's 659 training images get 2,520 in a real fit)
against ``steps=2500`` for every set, about that step count on the largest shared set, so every
set gets the training the time budget allows (the default since; its first two runs named the
60-epoch row "(default)" and gave it no parameters). Data: the selection suite's (held-out
good images with pseudo-defects; tire's later ``validation/good``). Writes section
``selection-rd4ad-steps`` (``-seed<S>`` with ``--seed S`` other than 0). Run:
``.venv/bin/python benchmarks/rd4ad_steps_selection.py [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

if __name__ == "__main__":
    ap = seed_parser(__doc__)
    ap.add_argument("--steps", type=int, default=2500, help="optimiser steps of the candidate")
    args = ap.parse_args()
    # spelled out: the default changed from 60 epochs to 2500 steps after the first runs
    run_seeded("rd4ad", "selection-rd4ad-steps",
               {"60 epochs": {"epochs": 60}, f"{args.steps} steps": {"steps": args.steps}},
               args.seed, args.placement, **seed_kwargs(args))
