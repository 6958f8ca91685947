"""Validation-only check (no test split used) of RD4AD's deeper MobileNetV2 taps (s8, s16, s32)
with the light student, under the 2500-step default: the cheaper of the two students tried for
those taps at 60 epochs (section ``selection-rd4ad-student``). Its baseline is the 2500-step row
of section ``selection-rd4ad-steps`` (``-seed<S>``), from the same machine in the same session
(fits are bit-reproducible on one machine, docs/rd4ad.md), so only the candidate is fitted here.
Writes section ``selection-rd4ad-light-taps`` (``-seed<S>`` with ``--seed S`` other than 0). Run:
``.venv/bin/python benchmarks/rd4ad_light_taps_selection.py [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("rd4ad", "selection-rd4ad-light-taps",
               {"s8 s16 s32, light blocks, 2500 steps": {"layers": ["s8", "s16", "s32"],
                                                         "block": "light"}},
               args.seed, args.placement, **seed_kwargs(args))
