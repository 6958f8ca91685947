"""Validation-only check of PatchCore's taps (no test split used): the default s8 + s16 of
MobileNetV2 against s8 + s16 + s32 (its 320-channel last stage, 448-d patches: 3.5x the exact
search's work) and the same with ``search_dim=64`` (the search back near the default's cost).
The s32 tap was first tried on magnetic_tile's test split as a diagnosis (docs/methods.md);
this is the choice made without it. Writes section ``selection-patchcore-layers``. Run:
``.venv/bin/python benchmarks/patchcore_layers_selection.py``.
"""

from oddeye.bench.selection_suite import run

S32 = ["s8", "s16", "s32"]

if __name__ == "__main__":
    run(method="patchcore", section="selection-patchcore-layers",
        candidates={"s8 s16 (default)": {}, "s8 s16 s32": {"layers": S32},
                    "s8 s16 s32, search_dim 64": {"layers": S32, "search_dim": 64}})
