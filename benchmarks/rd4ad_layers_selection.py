"""Validation-only check of RD4AD's teacher taps (no test split used): the selection suite's
data (held-out good images with pseudo-defects; tire's later `validation/good`) scored by the
default taps (s4, s8, s16) and by the deeper s8, s16, s32 of MobileNetV2, whose shallowest tap
has 32 channels instead of 24. Writes section ``selection-rd4ad-layers`` of
benchmarks/RESULTS.md (``selection-rd4ad-layers-seed<S>`` with ``--seed S`` other than 0: the
same comparison with another initialisation and batch order; docs/rd4ad.md). Run:
``.venv/bin/python benchmarks/rd4ad_layers_selection.py [--seed S]`` (both rows pinned to
the 60 epochs the sections ran, the default then, so a rerun reproduces them).
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("rd4ad", "selection-rd4ad-layers",
               {"s4 s8 s16 (default)": {"epochs": 60},
                "s8 s16 s32": {"layers": ["s8", "s16", "s32"], "epochs": 60}},
               args.seed, args.placement, **seed_kwargs(args))
