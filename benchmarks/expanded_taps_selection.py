"""Validation-only check (no test split used) of MobileNetV2's expanded taps (``s8x``: the
next block's 1x1 expansion + ReLU6 of ``s8``, 6x wider and non-negative; docs/backbones.md) as
the features of PatchCore (``s8x s16x``, 768 dims, against ``s8 s16``, 128) or PaDiM (``s4x s8x
s16x``, 912 channels of which 100 are drawn, against ``s4 s8 s16``, 152), everything else at its
default, both rows fitted in one run. Writes section ``selection-<method>-expanded``
(``-seed<S>`` with ``--seed S``). Run: ``.venv/bin/python benchmarks/expanded_taps_selection.py
--method patchcore|padim [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "patchcore": {"s8 s16 (default)": {}, "s8x s16x": {"layers": ["s8x", "s16x"]}},
    "padim": {"s4 s8 s16 (default)": {}, "s4x s8x s16x": {"layers": ["s4x", "s8x", "s16x"]}},
}

if __name__ == "__main__":
    ap = seed_parser(__doc__)
    ap.add_argument("--method", choices=list(CANDIDATES), required=True)
    args = ap.parse_args()
    run_seeded(args.method, f"selection-{args.method}-expanded", CANDIDATES[args.method],
               args.seed, args.placement, **seed_kwargs(args))
