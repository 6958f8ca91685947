"""benchmarks/rd4ad_stage_weights_selection.py scores one ``spread`` fit both ways: its
``equal`` row must be the plain-sum model exactly, and the fitted weights must survive it."""

from __future__ import annotations

import pytest
import torch

from oddeye.bench.selection_suite import score_fitted, validation_split
from tests.bench.scripts import load_script
from tests.data.test_pseudo import _random_pngs


@pytest.fixture()
def script():
    return load_script("rd4ad_stage_weights_selection")


def test_one_fit_scores_equal_exactly_as_the_plain_sum_model(script, tmp_path):
    from oddeye.api import Detector

    paths = _random_pngs(tmp_path, 14, seed=3)
    fit, images, labels, masks = validation_split(paths, 64, max_val=4)
    params = {"size": 64, "epochs": 1, "train_batch": 4}
    equal = script.score_once("rd4ad", {"stage_weights": "equal", **params}, fit, images,
                              labels, masks)
    spread = script.score_once("rd4ad", {"stage_weights": "spread", **params}, fit, images,
                               labels, masks)
    assert len(script._fits) == 1  # one fit served both rows
    head = next(iter(script._fits.values())).model_.head
    assert not torch.equal(head.stage_scale, torch.ones_like(head.stage_scale))  # restored
    plain = Detector(method="rd4ad", stage_weights="equal", **params).fit(fit, progress=False)
    want = score_fitted(plain, images, labels, masks)
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert equal[key] == pytest.approx(want[key], abs=1e-12), key
    assert set(spread) == set(equal)
