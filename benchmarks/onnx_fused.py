"""ONNX Runtime against torch for PatchCore on one backbone and on two fused
(``mobilenet_v2+efficientnet_lite0``), both fitted on the ONNX suite's synthetic grid class
(20 images, 256 px, seed 0) and timed by ``oddeye.bench.onnx_suite`` (batch 1 and 16, 1 and 2
threads). Writes section ``onnx-fused``. Run: ``.venv/bin/python benchmarks/onnx_fused.py
[--out FILE]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from oddeye.api import Detector
from oddeye.bench.onnx_suite import run, synthetic_images

MODELS = {"patchcore": None, "patchcore_fused": "mobilenet_v2+efficientnet_lite0"}

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="results file (default benchmarks/RESULTS.md)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        train, _ = synthetic_images(tmp)
        paths = []
        for name, backbone in MODELS.items():
            det = Detector(method="patchcore", backbone=backbone, size=256, seed=0,
                           device="cpu").fit(train, progress=False)
            paths.append(det.save(Path(tmp) / f"{name}.oddeye"))
        print(run(out_path=args.out, models=paths, section="onnx-fused"))
