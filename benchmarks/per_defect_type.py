"""Diagnostic (test split, chooses nothing): image AUROC of good vs each defect type.

Run: PYTHONPATH=src .venv/bin/python benchmarks/per_defect_type.py magnetic_tile patchcore padim
(default methods and Detector defaults: 10% of train/good held out for the threshold). Quoted
in docs/methods.md.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.data.mvtec import load_dataset
from oddeye.evaluation import auroc_by_type
from oddeye.metrics.functional import auroc


def main(dataset: str, methods: list[str]) -> None:
    torch.set_num_threads(2)
    cat = load_dataset(shared_root() / DATASETS[dataset])[0]
    types = np.array([s.defect_type for s in cat.test])
    for method in methods:
        det = Detector(method=method).fit([s.path for s in cat.train], progress=False)
        scores = det.decision_function([s.path for s in cat.test])
        row = auroc_by_type(scores, (types != "good").astype(int), types)
        cells = ", ".join(f"{t} {v:.3f}" for t, v in row.items())
        print(f"{method}: all {auroc(scores, (types != 'good').astype(int)):.3f}; {cells}",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["patchcore"])
