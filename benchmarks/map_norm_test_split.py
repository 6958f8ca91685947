"""Diagnostic on the TEST split (chooses nothing): PatchCore with ``map_norm="position"``.

Run: PYTHONPATH=src .venv/bin/python benchmarks/map_norm_test_split.py DATASET [--no-validation]
(DATASET tire, magnetic_tile or deeppcb). Statistics come from the set's ``validation/good`` when
it has one, else (or with ``--no-validation``) from the held-out share of ``train/good``. The
figures it printed are the "Why it is off by default" table of docs/methods.md.
"""

from __future__ import annotations

import sys

import torch

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.data.mvtec import load_dataset
from oddeye.evaluation import evaluate_category


def main(dataset: str, use_validation: bool) -> None:
    torch.set_num_threads(2)
    cat = load_dataset(shared_root() / DATASETS[dataset])[0]
    val = ([s.path for s in cat.validation] or None) if use_validation else None
    det = Detector(method="patchcore", map_norm="position").fit(
        [s.path for s in cat.train], validation=val, progress=False)
    r = evaluate_category(det, cat, progress=False)
    print(f"{dataset}: statistics from {det.threshold_info_['source']}: image AUROC "
          f"{r['image_auroc']:.3f} pixel AUROC {r['pixel_auroc']:.3f} AUPRO {r['pixel_aupro']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], "--no-validation" not in sys.argv[2:])
