"""Validation-only check of RD4AD's teacher taps (no test split used): the selection suite's
data (held-out good images with pseudo-defects; tire's later `validation/good`) scored by the
default taps (s4, s8, s16) and by the deeper s8, s16, s32 of MobileNetV2, whose shallowest tap
has 32 channels instead of 24. Writes section ``selection-rd4ad-layers`` of
benchmarks/RESULTS.md (docs/rd4ad.md). Run:
``.venv/bin/python benchmarks/rd4ad_layers_selection.py``.
"""

from oddeye.bench.selection_suite import run

if __name__ == "__main__":
    run(method="rd4ad", section="selection-rd4ad-layers",
        candidates={"s4 s8 s16 (default)": {}, "s8 s16 s32": {"layers": ["s8", "s16", "s32"]}})
