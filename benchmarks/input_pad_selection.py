"""Validation-only check (no test split used) of the input border ``pad``: the image framed in
the ImageNet mean colour before the backbone, taps cropped back (docs/backbones.md, "Input
border"), for PatchCore and PaDiM. Writes section ``selection-input-pad`` (``-anywhere`` with
``--placement anywhere``: the pseudo-defects may sit on the border too; ``-seed<S>`` with
``--seed S`` other than 0). Run:
``.venv/bin/python benchmarks/input_pad_selection.py [--seed S] [--placement anywhere]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "patchcore, pad 0": {"pad": 0},
    "patchcore, pad 16": {"pad": 16},
    "patchcore, pad 32": {"pad": 32},
    "padim, pad 0": {"method": "padim", "pad": 0},
    "padim, pad 16": {"method": "padim", "pad": 16},
}

if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    run_seeded("patchcore", "selection-input-pad", CANDIDATES, args.seed, args.placement,
               **seed_kwargs(args))
