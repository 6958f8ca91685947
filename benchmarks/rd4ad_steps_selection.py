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

import argparse

from oddeye.bench.selection_suite import run

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="RD4AD seed of every fit")
    ap.add_argument("--steps", type=int, default=2500, help="optimiser steps of the candidate")
    args = ap.parse_args()
    extra = {"seed": args.seed} if args.seed else {}
    run(method="rd4ad",
        section="selection-rd4ad-steps" + (f"-seed{args.seed}" if args.seed else ""),
        # spelled out: the default changed from 60 epochs to 2500 steps after the first runs
        candidates={"60 epochs": {"epochs": 60, **extra},
                    f"{args.steps} steps": {"steps": args.steps, **extra}})
