"""ONNX Runtime against torch for PatchCore on one backbone and on two fused
(``mobilenet_v2+efficientnet_lite0``), both fitted on the ONNX suite's synthetic grid class
(20 images, 256 px, seed 0) and timed by ``oddeye.bench.onnx_suite`` (batch 1 and 16, 1 and 2
threads), written as section ``onnx-fused``. ``--data DIR`` fits on that category folder's
``train/good`` instead (a real bank size: 10,000 patches, the cap, on the shared sets) and
writes section ``onnx-fused-<DIR name>``. Run: ``.venv/bin/python benchmarks/onnx_fused.py
[--data DIR] [--out FILE]``.
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
    ap.add_argument("--data", default=None, help="a category folder to fit on (train/good)")
    args = ap.parse_args()
    section = "onnx-fused"
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            from oddeye.data.mvtec import load_category

            train = [x.path for x in load_category(Path(args.data)).train]
            section += "-" + Path(args.data).resolve().name
        else:
            train, _ = synthetic_images(tmp)
        paths = []
        for name, backbone in MODELS.items():
            det = Detector(method="patchcore", backbone=backbone, size=256, seed=0,
                           device="cpu").fit(train, progress=False)
            paths.append(det.save(Path(tmp) / f"{name}.oddeye"))
        print(run(out_path=args.out, models=paths, section=section))
