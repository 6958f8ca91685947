"""Validation-only check (no test split used): where PatchCore's input frame is cut away.

``frame_crop="taps"`` (the twelfth session's order) crops every tap back to the image's cells
before the 3 x 3 aggregation, so a border cell averages 4 or 6 cells where the others average
9; ``"aggregated"`` aggregates over the framed maps and cuts the embedding afterwards, as the
first magnetic_tile diagnosis did (docs/backbones.md, "Input border"). Frames of 16 and 32 px.
Writes section ``selection-frame-order`` (``-anywhere``, ``-seed<S>`` as every selection
script). Run: ``.venv/bin/python benchmarks/patchcore_frame_order_selection.py [--seed S]
[--placement anywhere]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "patchcore, pad 16, taps cropped": {"pad": 16, "frame_crop": "taps"},
    "patchcore, pad 16, cut after aggregation": {"pad": 16, "frame_crop": "aggregated"},
    "patchcore, pad 32, cut after aggregation": {"pad": 32, "frame_crop": "aggregated"},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("patchcore", "selection-frame-order", CANDIDATES, args.seed, args.placement,
               **seed_kwargs(args))
