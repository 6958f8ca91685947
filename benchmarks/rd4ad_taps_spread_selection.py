"""Validation-only check (no test split used) of RD4AD's deeper MobileNetV2 taps (s8, s16, s32)
with the light student, under the ``stage_weights="spread"`` default of the nineteenth session.
The same candidate lost nothing on validation under the plain sum (section
``selection-rd4ad-light-taps``) but was not switched; the weighting changed what each stage
contributes, so it is checked again. Its baseline is the ``spread`` row of section
``selection-rd4ad-stage-weights`` (``-seed<S>``): same code state and machine, where fits are
bit-reproducible, so only the candidate is fitted here. Writes section
``selection-rd4ad-taps-spread`` (``-seed<S>`` with ``--seed S`` other than 0). Run:
``.venv/bin/python benchmarks/rd4ad_taps_spread_selection.py [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("rd4ad", "selection-rd4ad-taps-spread",
               {"s8 s16 s32, light blocks, spread": {"layers": ["s8", "s16", "s32"],
                                                     "block": "light",
                                                     "stage_weights": "spread"}},
               args.seed, args.placement, **seed_kwargs(args))
