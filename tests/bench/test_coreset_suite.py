"""The coreset benchmark's real-set patches are the ones a default PatchCore fit selects from."""

from __future__ import annotations

import numpy as np
import torch

from oddeye.api import Detector
from oddeye.bench.coreset_suite import training_patches
from oddeye.data.mvtec import load_dataset


def test_suite_patches_match_a_default_patchcore_fit(synth_root):
    """Same frame, same cut (after aggregation), same embedding: 32 x 32 cells an image at
    256 px. A double crop (28 x 28) or none (36 x 36) would change the count."""
    patches = training_patches(synth_root / "grid")
    n = len(load_dataset(synth_root / "grid")[0].train)
    det = Detector(method="patchcore", size=256, position=0.0, holdout=0.0)
    det.fit([s.path for s in load_dataset(synth_root / "grid")[0].train], progress=False)
    head, ext = det.model_.head, det.model_.extractor
    dim = sum(ext.channels.values())  # the aggregated embedding; position columns may follow
    assert patches.shape[0] == n * 32 * 32 and patches.shape[1] >= dim
    assert det.pad_ == ext.pad == 16 and head.frame == 2 and not ext.crop
    # every bank row is one of the suite's patches (the fit selected from the same set)
    d = torch.cdist(head.bank[:50, :dim], patches[:, :dim],
                    compute_mode="donot_use_mm_for_euclid_dist").amin(1)
    np.testing.assert_allclose(d.numpy(), 0, atol=1e-4)
