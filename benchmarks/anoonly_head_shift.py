"""anoonly-head on new good images: its two distances (half and full bank) and its learned term.

Synthetic classes (seed 1, no shared test split), K = 5 labelled defects; statistics over the
patches of the good test images. Run: .venv/bin/python benchmarks/anoonly_head_shift.py
(numbers quoted in docs/semisup.md).
"""

import numpy as np
import torch

from oddeye.api import Detector
from oddeye.commands._common import pick_shots
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.data.synth import generate
from oddeye.preprocess import load_resized, resize_mask, to_batch

root = generate("/tmp/oddeye_anoonly_shift_synth", seed=1, n_train=40, n_test_good=15,
                n_test_defect=4)
for cat in load_dataset(root):
    goods = [s.path for s in cat.train]
    chosen = pick_shots([s for s in cat.test if s.label == 1], 5, 0)
    masks = [np.zeros((256, 256), np.uint8)] * len(goods) + [
        resize_mask(load_sample_mask(s, (256, 256)), 256) for s in chosen]
    det = Detector(method="anoonly-head").fit(goods + [s.path for s in chosen],
                                               labels=[0] * len(goods) + [1] * 5, masks=masks,
                                               progress=False)
    head = det.model_.head
    x = to_batch(load_resized([s.path for s in cat.test if s.label == 0], 256))
    with torch.inference_mode():
        emb = head.embed(det.model_.extractor(det.model_.normalize(x)))
        z_input = head._distance(emb, head.input_bank, head.input_bank_sq)
        z_prior = head._distance(emb, head.bank, head.bank_sq)
        learned = head.learned(torch.cat([emb, z_input], dim=1))
    print(f"{cat.name:8s} good test patches, standardised distance (training: 0 / 1): "
          f"half bank {z_input.mean():+.3f} / {z_input.std():.3f}, full bank "
          f"{z_prior.mean():+.3f} / {z_prior.std():.3f}; learned term "
          f"{learned.mean():+.3f} / {learned.std():.3f}", flush=True)
