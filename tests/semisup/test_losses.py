"""The loss functions on hand-computed values, base and AnoOnly."""

from __future__ import annotations

import pytest
import torch

from oddeye.semisup.deepsad import sad_loss
from oddeye.semisup.devnet import deviation_loss
from oddeye.semisup.feawad import feawad_loss
from oddeye.semisup.prenet import relation_loss


def test_deviation_loss():
    s, y = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    assert float(deviation_loss(s, y, 0.0, 1.0)) == pytest.approx((1 + 3) / 2)
    assert float(deviation_loss(s, y, 0.0, 1.0, anoonly=True)) == pytest.approx(3)
    assert float(deviation_loss(torch.tensor([7.0]), torch.tensor([1.0]), 0.0, 1.0)) == 0.0
    # the reference prior standardises the score: dev = (s - mean) / std
    assert float(deviation_loss(torch.tensor([3.0]), torch.tensor([0.0]), 1.0, 2.0)) == 1.0


def test_relation_loss_drops_unlabelled_pairs_with_anoonly():
    s = torch.tensor([8.0, 3.0, 1.0])
    kind = torch.tensor([0, 1, 2])  # (a,a) target 8, (a,u) target 4, (u,u) target 0
    assert float(relation_loss(s, kind)) == pytest.approx((0 + 1 + 1) / 3)
    assert float(relation_loss(s, kind, anoonly=True)) == pytest.approx((0 + 1) / 2)


def test_sad_loss():
    d, y = torch.tensor([4.0, 0.5]), torch.tensor([0.0, 1.0])
    assert float(sad_loss(d, y)) == pytest.approx((4 + 1 / (0.5 + 1e-6)) / 2)
    assert float(sad_loss(d, y, anoonly=True)) == pytest.approx(1 / (0.5 + 1e-6))


def test_feawad_loss_with_and_without_reconstruction_terms():
    s, e, y = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0])
    assert float(feawad_loss(s, e, y)) == pytest.approx(((1 + 3) + (3 + 1)) / 2)
    assert float(feawad_loss(s, e, y, rec_loss=False)) == pytest.approx((1 + 3) / 2)
    assert float(feawad_loss(s, e, y, anoonly=True)) == pytest.approx(3 + 1)
    assert float(feawad_loss(s, e, y, anoonly=True, rec_loss=False)) == pytest.approx(3)
