"""The service around real models: the same numbers as the Python API, for .oddeye and .onnx."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from oddeye.serve.app import create_app  # noqa: E402
from tests.export.models import sample_images  # noqa: E402


def _post(client, paths):
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in paths]
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_service_scores_equal_python_api(patchcore_file, synth_root):
    import oddeye

    det = oddeye.load(patchcore_file)
    paths = sample_images(synth_root)
    expected = det.predict(paths)
    with TestClient(create_app(det, model_path=patchcore_file)) as client:
        res = _post(client, paths)
        model = client.get("/v1/model").json()
    assert model["method"] == "patchcore" and model["format"] == "oddeye"
    assert model["file"] == patchcore_file.name and model["input_size"] == det.size
    assert model["input_frame"] == det.pad_ == 16
    np.testing.assert_allclose([r["score"] for r in res], expected.scores, rtol=1e-6)
    assert [r["label"] for r in res] == expected.labels.tolist()
    assert all(r["threshold"] == det.threshold_ for r in res)
    ov = Image.open(io.BytesIO(base64.b64decode(res[0]["overlay_png_base64"])))
    assert ov.size == Image.open(paths[0]).size


def test_service_serves_onnx_model(patchcore_file, synth_root, tmp_path):
    pytest.importorskip("onnxruntime")
    import oddeye
    from oddeye.export.onnx import OnnxDetector, export_onnx

    det = oddeye.load(patchcore_file)
    onnx_path = export_onnx(det, tmp_path / "m.onnx")
    paths = sample_images(synth_root)
    with TestClient(create_app(OnnxDetector(onnx_path), model_path=onnx_path)) as client:
        res = _post(client, paths)
        model = client.get("/v1/model").json()
    assert model["format"] == "onnx" and model["backbone"] == det.method_.backbone
    assert model["threshold"] == det.threshold_
    np.testing.assert_allclose([r["score"] for r in res], det.predict(paths).scores, atol=1e-4)
