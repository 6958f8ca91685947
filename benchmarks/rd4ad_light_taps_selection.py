"""Validation-only check (no test split used) of RD4AD's deeper MobileNetV2 taps (s8, s16, s32)
with the light student, under the 2500-step default: the cheaper of the two students tried for
those taps at 60 epochs (section ``selection-rd4ad-student``). Its baseline is the 2500-step row
of section ``selection-rd4ad-steps`` (``-seed<S>``), from the same machine in the same session
(fits are bit-reproducible on one machine, docs/rd4ad.md), so only the candidate is fitted here.
Writes section ``selection-rd4ad-light-taps`` (``-seed<S>`` with ``--seed S`` other than 0). Run:
``.venv/bin/python benchmarks/rd4ad_light_taps_selection.py [--seed S]``.
"""

import argparse

from oddeye.bench.selection_suite import run

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="RD4AD seed of every fit")
    seed = ap.parse_args().seed
    extra = {"seed": seed} if seed else {}
    run(method="rd4ad",
        section="selection-rd4ad-light-taps" + (f"-seed{seed}" if seed else ""),
        candidates={"s8 s16 s32, light blocks, 2500 steps": {
            "layers": ["s8", "s16", "s32"], "block": "light", **extra}})
