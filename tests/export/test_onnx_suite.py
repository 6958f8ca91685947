"""Smoke test of the ONNX benchmark suite on a tiny given model."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")


def test_onnx_suite_writes_its_section(patchcore_file, tmp_path):
    from oddeye.bench.onnx_suite import run

    out = tmp_path / "RESULTS.md"
    body = run(out_path=out, models=[patchcore_file], batches=(1, 4), repeats=1, size=64,
               threads=1)
    assert "<!-- section:onnx -->" in out.read_text()
    (row,) = [line for line in body.splitlines() if line.startswith("| patchcore")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "64px" and cells[3] == "1"
    assert all(float(c) > 0 for c in (cells[4], cells[5], cells[7], cells[8]))
    assert float(cells[10]) < 1e-4 and float(cells[11]) < 1e-4  # parity columns


def test_onnx_timing_runs_the_exported_graph_once_per_image_and_pass(patchcore_file, synth_root,
                                                                     monkeypatch):
    import oddeye
    from oddeye.bench.onnx_suite import time_onnx_inference
    from oddeye.export.onnx import OnnxDetector

    batches = []
    original = OnnxDetector.run_batch

    def counted(self, x):
        batches.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(OnnxDetector, "run_batch", counted)
    images = sorted((synth_root / "grid" / "test" / "good").glob("*.png"))[:3]
    ms = time_onnx_inference(oddeye.load(patchcore_file), images, repeats=2, threads=1)
    assert ms > 0
    assert batches == [1] * (1 + 2 * 3)  # a warm-up, then every image at batch 1 in each pass
