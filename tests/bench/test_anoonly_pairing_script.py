"""``benchmarks/anoonly_head_pairing.py`` on a generated set: it runs end to end, its head-only
scores are the model's own, and its prior is what the head scores with the learned term off."""

from __future__ import annotations

import re

import pytest

import oddeye.api
from oddeye.bench import detection_suite
from oddeye.data.synth import generate

from .scripts import load_script


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_pairing_diagnosis_runs_and_checks_itself(tmp_path, monkeypatch, capsys):
    root = generate(tmp_path / "data", seed=3, classes=["disc"], n_train=16, n_test_good=6,
                    n_test_defect=5, size=96)
    monkeypatch.setenv("ODDEYE_SHARED_DATA", str(root))
    monkeypatch.setattr(detection_suite, "DATASETS", {"tire": "disc"})

    class Small(oddeye.api.Detector):
        def __init__(self, **kw):
            kw.setdefault("size", 64)
            if kw["method"] == "anoonly-head":  # plumbing only: a few steps, no gate choice
                kw.update(steps=5, gate="max")
            super().__init__(**kw)

    script = load_script("anoonly_head_pairing")
    monkeypatch.setattr(script, "Detector", Small)
    assert script.main(["1", "2", "tire"]) == 0
    out = capsys.readouterr().out
    # seeds 0 and 1, each with its default hold-out only: the set has no validation/good
    assert out.count("PatchCore seed") == 2 and "validation/good yes" not in out
    diff = float(re.search(r"own scores ([0-9.e+-]+)\)", out).group(1))
    assert diff < 1e-5  # the script's image scores are the model's
    prior, head = map(float, re.search(r"prior ([0-9.]+), head ([0-9.]+)", out).groups())
    assert 0 <= prior <= 1 and 0 <= head <= 1
    assert re.search(r"good: 6 images, the learned term lifts \d+", out)
    assert re.search(r"defective: 23 images", out)  # 5 types x 5, 2 of them labelled
