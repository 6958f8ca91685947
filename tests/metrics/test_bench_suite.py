"""The metrics benchmark suite on a tiny problem: its reference, data and written section."""

from __future__ import annotations

import numpy as np
import pytest

from oddeye.bench.metrics_suite import run, sweep_aupro, synthetic_maps
from oddeye.metrics import aupro
from tests.metrics.reference import blob_data, slow_aupro


def test_sweep_reference_converges_to_exact():
    # scores on a 0.25 grid: a sweep whose thresholds include every grid value is exact
    _, _, maps, masks = blob_data(np.random.default_rng(3), n=6, size=16, quantise=4)
    lo, hi = maps.min(), maps.max()
    n = int(round((hi - lo) * 4)) + 1  # linspace(hi, lo, n) hits every multiple of 0.25
    assert sweep_aupro(maps, masks, n) == pytest.approx(slow_aupro(maps, masks), abs=1e-9)
    assert sweep_aupro(maps, masks, n) == pytest.approx(aupro(maps, masks), abs=1e-9)


def test_synthetic_maps_are_deterministic_and_mixed():
    maps, masks = synthetic_maps(n_maps=12, size=48)
    again, _ = synthetic_maps(n_maps=12, size=48)
    assert maps.dtype == np.float32 and masks.dtype == np.uint8
    np.testing.assert_array_equal(maps, again)
    defective = masks.reshape(12, -1).any(axis=1)
    assert 0 < defective.sum() < 12


def test_run_writes_its_section(tmp_path):
    out = tmp_path / "RESULTS.md"
    body = run(out_path=out, n_maps=8, size=32, n_thresholds=200)
    text = out.read_text()
    assert "<!-- section:metrics -->" in text and body.splitlines()[0] in text
    assert "speed-up" in body and "|binned - exact|" in body
