"""What RD4AD's deeper MobileNetV2 taps (s8, s16, s32) cost per epoch with the default student
and with two cheaper ones (half the embedding; light blocks), against the default taps: tire,
pretrained teacher, batch 16, three epochs each (the suite's ``speed`` part, one process per
variant, run one after another). Timing only: no accuracy here; a cheaper student would still
have to win on validation data (docs/rd4ad.md, "Teacher taps"). Writes section
``rd4ad-student-cost``. ``--group expanded`` times the expanded targets and the expanded taps
with a student as wide as them instead (docs/rd4ad.md, "Expanded targets"; section
``rd4ad-expanded-cost``). Run: ``.venv/bin/python benchmarks/rd4ad_student_cost.py [--group
expanded]``.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from oddeye.bench.results import DEFAULT_RESULTS, write_section

S32 = ["s8", "s16", "s32"]
VARIANTS = {
    "s4 s8 s16, default student": {},
    "s8 s16 s32, default student": {"layers": S32},
    "s8 s16 s32, embed_dim 320": {"layers": S32, "embed_dim": 320},
    "s8 s16 s32, light blocks": {"layers": S32, "block": "light"},
}
EXPANDED = {
    "s4 s8 s16, default student": {},
    "expanded targets": {"expanded_targets": True},
    "s4x s8x s16x, student as wide": {"layers": ["s4x", "s8x", "s16x"]},
}
GROUPS = {"taps": (VARIANTS, "rd4ad-student-cost", "the deeper taps"),
          "expanded": (EXPANDED, "rd4ad-expanded-cost", "expanded targets and taps")}

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--group", choices=list(GROUPS), default="taps")
    variants, section, what = GROUPS[ap.parse_args().group]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, variant) in enumerate(variants.items()):
            out = Path(tmp) / f"{i}.json"
            params = {"backbone": None, "train_batch": 16, **variant}
            subprocess.run([sys.executable, "-m", "oddeye.bench.rd4ad_suite", "--part", "speed",
                            "--params", json.dumps(params), "--threads", "2", "--json",
                            str(out)], check=True)
            r = json.loads(out.read_text())
            rows.append((label, r))
            print(f"{label}: {r['s_per_epoch']:.1f} s/epoch, {r['ms_per_image_b1']:.1f} ms/image, "
                  f"{r['head_params_m']:.1f} M", file=sys.stderr, flush=True)
    base = rows[0][1]["s_per_epoch"]
    lines = [f"## RD4AD: what {what} cost per epoch (tire, timing only)", "",
             "MobileNetV2 teacher (pretrained), batch 16, 3 epochs, 2 threads; s/epoch = median "
             "of the 3 epochs (the first includes the teacher cache); ms/image = model only at "
             "batch 1. One run per row, one after another.", "",
             "| variant | student params M | s/epoch | vs default | ms/image |",
             "|---|---|---|---|---|"]
    for label, r in rows:
        lines.append(f"| {label} | {r['head_params_m']:.1f} | {r['s_per_epoch']:.1f} | "
                     f"{r['s_per_epoch'] / base:.2f}x | {r['ms_per_image_b1']:.1f} |")
    write_section(section, "\n".join(lines), DEFAULT_RESULTS)
