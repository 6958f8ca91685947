"""Validation-only check (no test split used) of the input frame (``pad=16``, docs/backbones.md,
"Input border") for RD4AD at its defaults (MobileNetV2 taps s4, s8, s16, 2500 steps). Its
baseline is the 2500-step row of section ``selection-rd4ad-steps`` (``-seed<S>``), fitted with
the same code and data and unframed (fits are bit-reproducible on one machine, docs/rd4ad.md),
so only the candidate is fitted here. Writes section ``selection-rd4ad-pad`` (``-seed<S>`` with
``--seed S`` other than 0). Run: ``.venv/bin/python benchmarks/rd4ad_pad_selection.py [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("rd4ad", "selection-rd4ad-pad", {"pad 16, 2500 steps": {"pad": 16}},
               args.seed, args.placement, **seed_kwargs(args))
