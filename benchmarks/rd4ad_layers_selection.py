"""Validation-only check of RD4AD's teacher taps (no test split used): the selection suite's
data (held-out good images with pseudo-defects; tire's later `validation/good`) scored by the
default taps (s4, s8, s16) and by the deeper s8, s16, s32 of MobileNetV2, whose shallowest tap
has 32 channels instead of 24. Writes section ``selection-rd4ad-layers`` of
benchmarks/RESULTS.md (``selection-rd4ad-layers-seed<S>`` with ``--seed S`` other than 0: the
same comparison with another initialisation and batch order; docs/rd4ad.md). Run:
``.venv/bin/python benchmarks/rd4ad_layers_selection.py [--seed S]``.
"""

import argparse

from oddeye.bench.selection_suite import run

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="RD4AD seed of every fit")
    seed = ap.parse_args().seed
    extra = {"seed": seed} if seed else {}
    run(method="rd4ad",
        section="selection-rd4ad-layers" + (f"-seed{seed}" if seed else ""),
        candidates={"s4 s8 s16 (default)": {**extra},
                    "s8 s16 s32": {"layers": ["s8", "s16", "s32"], **extra}})
