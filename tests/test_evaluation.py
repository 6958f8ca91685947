"""Per-defect-type image AUROC (``oddeye.evaluation.auroc_by_type``)."""

from __future__ import annotations

import numpy as np

from oddeye.evaluation import auroc_by_type, format_by_type


def test_auroc_by_type_scores_each_type_against_all_good_images():
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.15, 0.25])
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    types = ["good", "good", "good", "crack", "crack", "pit", "pit"]
    out = auroc_by_type(scores, labels, types)
    assert out == {"crack": 1.0, "pit": 0.5}  # pit: 0.15 beats 1 of 3 goods, 0.25 beats 2
    line = format_by_type({"tile": {"image_auroc_by_type": out}})
    assert line == "tile: image AUROC by defect type: crack 1.000, pit 0.500"


def test_auroc_by_type_needs_good_images_and_skips_absent_types():
    assert auroc_by_type(np.array([0.5, 0.7]), np.array([1, 1]), ["a", "b"]) == {}
    assert auroc_by_type(np.array([0.5]), np.array([0]), ["good"]) == {}
    assert format_by_type({"x": {"image_auroc_by_type": {}}}) == ""
