"""Validation-only check of two cheaper students for RD4AD's deeper MobileNetV2 taps (s8, s16,
s32; no test split used): half the embedding (``embed_dim=320``) and light blocks, on the
selection suite's data at seed 0. The default taps and the deeper taps with the default student
on the same data are section ``selection-rd4ad-layers`` (same split, same seed); the cheaper
students' epoch times are section ``rd4ad-student-cost``. Writes section
``selection-rd4ad-student``, run at 60 epochs (the default then; pinned here so a rerun
reproduces it). Run: ``.venv/bin/python benchmarks/rd4ad_student_selection.py``.
"""

from oddeye.bench.selection_suite import run

S32 = ["s8", "s16", "s32"]

if __name__ == "__main__":
    run(method="rd4ad", section="selection-rd4ad-student",
        candidates={"s8 s16 s32, light blocks": {"layers": S32, "block": "light", "epochs": 60},
                    "s8 s16 s32, embed_dim 320": {"layers": S32, "embed_dim": 320,
                                                  "epochs": 60}})
