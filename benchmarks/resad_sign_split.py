"""ResAD constraintor: sign-split vs plain ReLU, leave-one-class-out over synthetic classes only.

For each of the six synthetic classes (`oddeye synth` seed 0): train ResAD on the other five (40
images each), test the held-out class with k = 4 reference shots (seeds 0 and 1), next to
PatchCore fitted on the same 4 shots. No shared real data set is used. One torch thread.

Run: .venv/bin/python benchmarks/resad_sign_split.py [SYNTH_DIR] (numbers in docs/resad.md).
"""

import sys
from pathlib import Path

import numpy as np
import torch

from oddeye.bench.resad_suite import load_classes, run_fold

torch.set_num_threads(1)
classes = load_classes(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/oddeye_resad_synth"),
                       synthetic=True, real=False)
rows: dict[str, list] = {}
for held in classes:
    others = [c for c in classes if c.name != held.name]
    for sign in (True, False):
        r = run_fold(held, others, (4,), (0, 1), "mobilenet_v2", 40, {"sign_split": sign},
                     {"coreset_ratio": 1.0}, None)
        for method, label in (("resad", f"resad sign_split={sign}"), ("patchcore", "patchcore")):
            if method == "patchcore" and not sign:
                continue  # the same 4-shot PatchCore as in the sign_split=True run
            m = np.mean([[v["image_auroc"], v["pixel_auroc"], v["pixel_aupro"]]
                         for v in r[method].values()], axis=0)
            rows.setdefault(label, []).append(m)
            print(f"{held.name:8s} {label:24s} img {m[0]:.3f} px {m[1]:.3f} aupro {m[2]:.3f}",
                  flush=True)
print("mean over held-out classes (image AUROC / pixel AUROC / AUPRO@0.3):")
for label, vals in rows.items():
    m = np.mean(vals, axis=0)
    print(f"  {label:24s} {m[0]:.3f} / {m[1]:.3f} / {m[2]:.3f}")
