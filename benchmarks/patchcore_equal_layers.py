"""Validation of PatchCore's per-layer weighting on synthetic classes (seed 1, not a test split).

Run: .venv/bin/python benchmarks/patchcore_equal_layers.py (numbers quoted in docs/methods.md).
"""

from oddeye.api import Detector
from oddeye.data.mvtec import load_dataset
from oddeye.data.synth import generate
from oddeye.evaluation import evaluate_category

root = generate("/tmp/oddeye_eqval_synth", seed=1, classes=["grid", "noise", "stripes"],
                n_train=30, n_test_good=10, n_test_defect=3)
for cat in load_dataset(root):
    for eq in (False, True):
        det = Detector(method="patchcore", equal_layers=eq, cosine=False)  # width scaling only
        det.fit([s.path for s in cat.train], progress=False)
        r = evaluate_category(det, cat, progress=False)
        print(cat.name, "equal_layers", eq, f"img {r['image_auroc']:.3f} "
              f"px {r['pixel_auroc']:.3f} aupro {r['pixel_aupro']:.3f}", flush=True)
