"""Validation-only re-check (no test split used) of RD4AD's teacher under today's defaults
(2500 steps, per-stage standardised maps): MobileNetV2 (the default) against EfficientNet-Lite0,
the other backbone with offline weights, each with its own ``s4 s8 s16`` taps. The choice was
made in the fourth session on the synthetic test split at 20 epochs (docs/rd4ad.md, "Default
teacher"), before the defaults of today existed. Writes section ``selection-rd4ad-teacher``
(``-seed<S>`` with ``--seed S``). Run: ``.venv/bin/python benchmarks/rd4ad_teacher_selection.py
[--seed S] [--only NAME]``. The twenty-third session's real-sets check on fresh validation
draws: ``--seed S --split-seed S --real-only`` for S = 1, 2 (section
``selection-rd4ad-teacher-split<S>-real-seed<S>``).
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "mobilenet_v2 (default)": {},
    "efficientnet_lite0": {"backbone": "efficientnet_lite0"},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("rd4ad", "selection-rd4ad-teacher", CANDIDATES, args.seed, args.placement,
               **seed_kwargs(args))
