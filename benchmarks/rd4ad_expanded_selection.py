"""Validation-only check (no test split used) of RD4AD with MobileNetV2's expanded taps as what
the student rebuilds: ``expanded_targets`` (the bottleneck reads the usual linear taps ``s4 s8
s16``, the student rebuilds their 6x wider post-ReLU6 expansions ``s4x s8x s16x`` through one
1x1 conv per stage; about 1.8x the default's training step on the CPU) and the expanded taps
as the whole teacher (``layers=s4x s8x s16x``: OCBE and student as wide as them, 30x the step
on the CPU, a GPU-only option), against the default, all fitted in one run. Writes section
``selection-rd4ad-expanded`` (``-cuda`` with ``--device cuda``, ``-seed<S>`` with ``--seed S``).
Run: ``.venv/bin/python benchmarks/rd4ad_expanded_selection.py [--seed S] [--device cuda]
[--sets FILE.npz] [--only NAME ...]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "default": {},
    "expanded targets": {"expanded_targets": True},
    "expanded taps, wide student": {"layers": ["s4x", "s8x", "s16x"]},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("rd4ad", "selection-rd4ad-expanded", CANDIDATES, args.seed, args.placement,
               **seed_kwargs(args))
