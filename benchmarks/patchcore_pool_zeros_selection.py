"""Validation-only check (no test split used): border cells pooled with zeros instead of a frame.

``pool_zeros=True`` counts the feature maps' zero padding as cells of a border cell's 3 x 3
average (``count_include_pad``, the default of ``F.avg_pool2d`` and of an unfold-then-average
aggregation), so border embeddings shrink towards zero, a cheaper way to quiet the border than
the 16-px frame (no extra backbone pixels). Found on the test splits' diagnosis
(``benchmarks/patchcore_input_geometry.py DATA zeropool``: magnetic_tile 0.930, tire 0.787,
deeppcb 0.716 image AUROC; the frame cut after aggregation 0.924 / 0.774 / 0.680), so only this
validation may choose. Writes section ``selection-pool-zeros`` (``-anywhere``, ``-seed<S>`` as
every selection script). Run: ``.venv/bin/python benchmarks/patchcore_pool_zeros_selection.py
[--seed S] [--placement anywhere]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "patchcore, no frame": {"pad": 0},
    "patchcore, 16-px frame cut after aggregation (default)": {},
    "patchcore, no frame, zeros pooled": {"pad": 0, "pool_zeros": True},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("patchcore", "selection-pool-zeros", CANDIDATES, args.seed, args.placement,
               **seed_kwargs(args))
