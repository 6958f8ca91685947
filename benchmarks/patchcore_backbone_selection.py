"""Validation-only re-check of PatchCore's backbone (no test split used) under today's defaults.

The first backbone comparison (section ``selection-patchcore``) predates the 16-px input frame
and the position choice; this runs the two backbones with offline weights again with everything
else at its default: MobileNetV2 s8 + s16 (default), EfficientNet-Lite0 s8 + s16 and s4 + s8 + s16.
Writes section ``selection-patchcore-backbone`` (``-seed<S>``, ``-anywhere`` as every selection
script). Run: ``.venv/bin/python benchmarks/patchcore_backbone_selection.py [--seed S]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "mobilenet_v2 s8+s16 (default)": {},
    "efficientnet_lite0 s8+s16": {"backbone": "efficientnet_lite0"},
    "efficientnet_lite0 s4+s8+s16": {"backbone": "efficientnet_lite0",
                                     "layers": ["s4", "s8", "s16"]},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("patchcore", "selection-patchcore-backbone", CANDIDATES, args.seed,
               args.placement, **seed_kwargs(args))
