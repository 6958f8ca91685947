"""Fixes to the Python API, ``oddeye serve`` and the HTML report: torch tensors in ``predict``,
``map_at_original_size`` indices, unique report anchors, the page's error box, the serve limits,
``--refs`` refused for a model without references, and HEAD requests."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from oddeye.cli import main
from oddeye.errors import ImageReadError, OddeyeError
from oddeye.prediction import Prediction


@pytest.fixture(scope="module")
def detector(patchcore_file):
    import oddeye

    return oddeye.load(patchcore_file, device="cpu")


@pytest.fixture(scope="module")
def grid_images(synth_root) -> list[np.ndarray]:
    """Three 128x128 test images of the synthetic grid class, as uint8 RGB arrays."""
    from oddeye.io.images import list_images, read_image

    paths = sorted(list_images(synth_root / "grid" / "test", recursive=True))[:3]
    return [read_image(p) for p in paths]


# ------------------------------------------------------------------ 1. torch tensors in predict
def test_hwc_tensor_is_one_image_scored_as_its_numpy_array(detector, grid_images):
    torch = pytest.importorskip("torch")
    img = grid_images[0]
    by_tensor = detector.predict(torch.from_numpy(img))
    by_array = detector.predict(img)
    assert by_tensor.scores.shape == (1,)
    np.testing.assert_allclose(by_tensor.scores, by_array.scores, rtol=1e-5)
    # a float tensor that needs grad converts too (detached first)
    grad = torch.from_numpy(img).float().div(255).requires_grad_(True)
    assert detector.predict(grad).scores.shape == (1,)
    # a list of tensors: each item as its numpy array
    assert detector.predict([torch.from_numpy(img)]).scores.shape == (1,)


def test_chw_tensor_gets_the_channel_first_error(detector, grid_images):
    torch = pytest.importorskip("torch")
    chw = torch.from_numpy(grid_images[0]).permute(2, 0, 1).float() / 255
    with pytest.raises(ImageReadError, match=r"got shape \(3, 128, 128\).*channel-first"):
        detector.predict(chw)


def test_grayscale_tensor_is_one_image(detector, grid_images):
    torch = pytest.importorskip("torch")
    gray = grid_images[0][..., 0]
    pred = detector.predict(torch.from_numpy(gray))
    assert pred.scores.shape == (1,)
    np.testing.assert_allclose(pred.scores, detector.predict(gray).scores, rtol=1e-5)


def test_4d_tensor_is_a_stack_scored_like_the_numpy_stack(detector, grid_images):
    torch = pytest.importorskip("torch")
    stack = np.stack(grid_images)
    by_tensor = detector.predict(torch.from_numpy(stack))
    by_array = detector.predict(stack)
    assert by_tensor.scores.shape == (len(grid_images),)
    np.testing.assert_allclose(by_tensor.scores, by_array.scores, rtol=1e-5)


def test_predict_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, oddeye.prediction, oddeye.io.images; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------- 2. map_at_original_size indices
def _prediction(n: int) -> Prediction:
    maps = np.stack([np.full((8, 8), float(i), np.float32) for i in range(n)])
    return Prediction(scores=np.arange(n, dtype=float), normalized_scores=np.zeros(n),
                      labels=np.zeros(n, np.int64), maps=maps, threshold=0.5,
                      original_sizes=[(16 + i, 12) for i in range(n)])


def test_map_at_original_size_accepts_python_style_indices():
    pred = _prediction(3)
    last = pred.map_at_original_size(-1)
    assert last.shape == (18, 12) and np.allclose(last, 2.0)
    assert np.array_equal(pred.map_at_original_size(-3), pred.map_at_original_size(0))
    assert pred.map_at_original_size(np.int64(1)).shape == (17, 12)


@pytest.mark.parametrize("index", [3, 99, -4])
def test_map_at_original_size_out_of_range_names_the_valid_range(index):
    with pytest.raises(IndexError, match=rf"image index {index} .*3 image\(s\).*0\.\.2"):
        _prediction(3).map_at_original_size(index)


# ---------------------------------------------------------------- 3. unique report anchors
def test_category_anchors_are_unique():
    from oddeye.report.html import category_anchors

    anchors = category_anchors(["a b", "a-b", "a-b-2", "a/b"])
    assert anchors["a b"] == "cat-a-b"
    assert len(set(anchors.values())) == 4


def test_report_sections_of_colliding_names_get_their_own_ids(patchcore_file, synth_root,
                                                              tmp_path):
    pytest.importorskip("matplotlib")
    import oddeye
    from oddeye.data.mvtec import load_dataset
    from oddeye.evaluation import evaluate_category
    from oddeye.report.html import write_test_report

    det = oddeye.load(patchcore_file, device="cpu")
    grid = next(c for c in load_dataset(synth_root) if c.name == "grid")
    d: dict = {}
    metrics = evaluate_category(det, grid, progress=False, details=d)
    names = ["a b", "a-b"]
    text = write_test_report(tmp_path, det, {n: metrics for n in names},
                             {n: d for n in names}).read_text(encoding="utf-8")
    ids = re.findall(r"<details id='([^']+)'", text)
    assert len(ids) == 2 and len(set(ids)) == 2
    for name, anchor in zip(names, ids, strict=True):
        # the nav link of each name jumps to the section that holds that name
        assert f"<a href='#{anchor}'>{name}</a>" in text
        assert re.search(rf"<details id='{anchor}'[^>]*><summary>{name} ", text)


# ---------------------------------------------------------------- serve: page, HEAD, limits
def _stub_app():
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from oddeye.serve.app import create_app
    from tests.serve.test_app import StubDetector

    return TestClient(create_app(StubDetector()))


def test_page_error_box_keeps_line_breaks():
    with _stub_app() as client:
        page = client.get("/").text
    rule = re.search(r"#error\{[^}]*\}", page)
    assert rule and "white-space:pre-line" in rule.group(0)
    assert 'errors.join("\\n")' in page  # the messages it keeps apart


def test_head_is_answered_on_the_page_health_and_model():
    with _stub_app() as client:
        for path in ("/", "/v1/health", "/v1/model"):
            r = client.head(path)
            assert r.status_code == 200, (path, r.text)
            assert r.content == b""
        assert "text/html" in client.head("/").headers["content-type"]
        assert client.get("/").status_code == 200
        spec = client.get("/openapi.json").json()
        assert list(spec["paths"]["/v1/health"]) == ["get"]  # HEAD not listed in the schema


@pytest.mark.parametrize("option,value", [
    ("--max-pending", "0"), ("--max-files", "0"), ("--max-upload-mb", "-1"),
    ("--max-upload-mb", "0"), ("--max-upload-mb", "nan"), ("--overlay-max-side", "0"),
    ("--batch-size", "0"), ("--max-pixels", "0"), ("--max-files", "-3"), ("--threads", "0"),
    ("--max-pending", "two"),
])
def test_serve_refuses_non_positive_limits_at_parse_time(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--model", str(tmp_path / "m.oddeye"), option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


def test_serve_accepts_positive_limits():
    from oddeye.cli import build_parser

    args = build_parser().parse_args(["serve", "--model", "m.oddeye", "--max-pending", "1",
                                      "--max-files", "1", "--max-upload-mb", "0.5",
                                      "--overlay-max-side", "1", "--batch-size", "2",
                                      "--max-pixels", "100"])
    assert (args.max_pending, args.max_files, args.max_upload_mb) == (1, 1, 0.5)
    assert (args.overlay_max_side, args.batch_size, args.max_pixels) == (1, 2, 100)


def test_serve_config_refuses_limits_below_one():
    from oddeye.serve.config import ServeConfig

    with pytest.raises(ValueError, match="max_files must be an integer >= 1, got 0"):
        ServeConfig(max_files=0)
    assert ServeConfig(max_pending=1).max_pending == 1


# ------------------------------------------------------------------ 6. serve --refs refused
def test_check_refs_refuses_refs_for_a_model_without_references():
    from oddeye.commands.serve import check_refs

    plain = SimpleNamespace(method="patchcore", needs_references=False)
    with pytest.raises(OddeyeError, match=r"\(patchcore\) does not use reference images; "
                                          "drop --refs"):
        check_refs(plain, "m.oddeye", ["ref.png"])
    check_refs(plain, "m.oddeye", None)
    few_shot = SimpleNamespace(method="resad", needs_references=True)
    with pytest.raises(OddeyeError, match="needs --refs"):
        check_refs(few_shot, "m.oddeye", None)
    check_refs(few_shot, "m.oddeye", ["ref.png"])
    onnx = type("OnnxDetector", (), {"method": "patchcore", "needs_references": False})()
    with pytest.raises(OddeyeError, match="an exported model takes no --refs"):
        check_refs(onnx, "m.onnx", ["ref.png"])


def test_serve_with_refs_for_patchcore_fails_before_the_server_starts(
        patchcore_file, tmp_path, capsys, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")

    def never(*args, **kwargs):
        raise AssertionError("the server must not start")

    monkeypatch.setattr(uvicorn, "run", never)
    ref = tmp_path / "ref.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(ref)
    code = main(["serve", "--model", str(patchcore_file), "--refs", str(ref), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not use reference images; drop --refs" in err
