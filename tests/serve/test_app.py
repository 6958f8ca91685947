"""The HTTP service with a stand-in detector (fast): endpoints, limits, errors, bounded queue."""

from __future__ import annotations

import base64
import io
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from oddeye.api import Prediction  # noqa: E402
from oddeye.serve.app import InferenceQueue, QueueFull, ServeConfig, create_app  # noqa: E402


class StubDetector:
    """Scores an image by its mean brightness (0..1); map = per-pixel brightness at model size."""

    method = "stub"
    size = 32
    threshold_ = 0.5
    score_scale_ = 0.1
    needs_references = False
    threshold_info_ = {"rule": "fixed", "source": "test"}

    def __init__(self, gate: threading.Event | None = None, fail: bool = False):
        self.method_ = SimpleNamespace(backbone="none")
        self.gate, self.fail = gate, fail
        self.calls = 0
        self.threads: set[str] = set()

    def predict(self, images, batch_size=None):
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.fail:
            raise RuntimeError("boom")
        maps = np.stack([np.asarray(Image.fromarray(im).convert("L").resize((32, 32)),
                                    np.float32) / 255.0 for im in images])
        scores = maps.mean(axis=(1, 2)).astype(np.float64)
        norm = 1 / (1 + np.exp(-(scores - self.threshold_) / self.score_scale_))
        return Prediction(scores=scores, normalized_scores=norm,
                          labels=(scores > self.threshold_).astype(np.int64), maps=maps,
                          threshold=self.threshold_,
                          original_sizes=[im.shape[:2] for im in images])


def png_bytes(value: int, size=(40, 30), mode: str = "RGB") -> bytes:
    """A flat image of one grey value, encoded as PNG."""
    buf = io.BytesIO()
    arr = np.full((size[1], size[0], 3), value, np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def client():
    det = StubDetector()
    with TestClient(create_app(det, ServeConfig(max_upload_bytes=200_000, max_files=3,
                                                max_pixels=1_000_000, overlay_max_side=20))) as c:
        c.detector = det
        yield c


def test_page_health_model_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="file-input"' in page.text and "v1/predict" in page.text
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["max_pending"] == ServeConfig().max_pending
    model = client.get("/v1/model").json()
    assert model["method"] == "stub" and model["backbone"] == "none"
    assert model["input_size"] == 32 and model["threshold"] == 0.5
    assert model["limits"]["max_files"] == 3 and model["server_version"]
    spec = client.get("/openapi.json").json()
    assert "/v1/predict" in spec["paths"] and "/v1/model" in spec["paths"]


def test_predict_one_image(client):
    r = client.post("/v1/predict", files={"file": ("bright.png", png_bytes(230), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    (res,) = body["results"]
    assert res["filename"] == "bright.png" and (res["width"], res["height"]) == (40, 30)
    assert res["score"] == pytest.approx(230 / 255, abs=0.01)
    assert res["label"] == 1 and res["verdict"] == "defective" and res["threshold"] == 0.5
    assert 0.5 < res["normalized_score"] <= 1
    ov = Image.open(io.BytesIO(base64.b64decode(res["overlay_png_base64"])))
    assert ov.format == "PNG" and ov.size == (20, 15)  # capped to overlay_max_side, aspect kept
    assert res["overlay_size"] == [20, 15]
    assert set(body["timing_ms"]) >= {"decode", "queue", "inference", "overlay", "total"}


def test_predict_several_files_keeps_order_and_decodes_by_content(client):
    buf = io.BytesIO()
    Image.fromarray(np.full((30, 40), 50000, np.uint16)).save(buf, format="PNG")  # 16-bit
    files = [("file", ("dark.png", png_bytes(20), "image/png")),
             ("file", ("grey16.tif", buf.getvalue(), "application/octet-stream")),
             ("file", ("gray.jpg", png_bytes(100, mode="L"), "image/jpeg"))]
    r = client.post("/v1/predict", files=files, params={"overlay": "false"})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["filename"] for x in res] == ["dark.png", "grey16.tif", "gray.jpg"]
    assert [x["label"] for x in res] == [0, 1, 0]
    # 16-bit values are scaled by 1/257 (oddeye.io.images), not clipped or stretched
    assert res[1]["score"] == pytest.approx(50000 / 257 / 255, abs=0.01)
    assert res[0]["score"] == pytest.approx(20 / 255, abs=0.01)
    assert all("overlay_png_base64" not in x for x in res)


@pytest.mark.parametrize("payload,status,code", [
    (b"this is not an image", 415, "unsupported_image"),
    (png_bytes(100)[:60], 415, "unsupported_image"),  # truncated PNG
    (b"", 400, "empty_file"),
])
def test_bad_images_are_clean_4xx(client, payload, status, code):
    r = client.post("/v1/predict", files={"file": ("bad.png", payload, "image/png")})
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and err["file"] == "bad.png" and "bad.png" in err["message"]
    assert "oddeye-upload" not in err["message"]  # the temp file name never leaks
    assert client.get("/v1/health").json()["status"] == "ok"


def test_request_errors_are_json(client):
    r = client.post("/v1/predict")
    assert r.status_code == 422 and "field 'file'" in r.json()["error"]["message"]
    files = [("file", (f"{i}.png", png_bytes(50), "image/png")) for i in range(4)]
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_files"
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_upload_size_limit_by_header_and_by_stream(client):
    big = b"\0" * 300_000
    r = client.post("/v1/predict", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(30):
            yield b"\0" * 10_000
        yield b"\r\n--x--\r\n"

    r = client.post("/v1/predict", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"


def test_pixel_limit_checked_before_decoding(client):
    buf = io.BytesIO()
    Image.new("1", (2000, 1000)).save(buf, format="PNG")  # 2 Mpx, a few hundred bytes
    r = client.post("/v1/predict", files={"file": ("huge.png", buf.getvalue(), "image/png")})
    assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large"
    assert client.detector.calls == 0


def test_internal_error_is_500_json_and_server_keeps_running():
    det = StubDetector(fail=True)
    with TestClient(create_app(det), raise_server_exceptions=False) as c:
        r = c.post("/v1/predict", files={"file": ("a.png", png_bytes(10), "image/png")})
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert c.get("/v1/health").json()["errors"] == 1
        det.fail = False
        r = c.post("/v1/predict", files={"file": ("a.png", png_bytes(10), "image/png")})
        assert r.status_code == 200


def test_full_queue_answers_503_and_recovers():
    """With max_pending=1 a second request while one runs is refused at once, not queued."""
    gate = threading.Event()
    det = StubDetector(gate=gate)
    app = create_app(det, ServeConfig(max_pending=1))
    first: dict = {}

    def send_first():
        with TestClient(app) as c1:
            first["r"] = c1.post("/v1/predict", files={"file": ("a.png", png_bytes(10))})

    with TestClient(app) as c:
        t = threading.Thread(target=send_first)
        t.start()
        deadline = time.time() + 10
        while app.state.queue.pending < 1 and time.time() < deadline:
            time.sleep(0.01)
        assert app.state.queue.pending == 1
        r = c.post("/v1/predict", files={"file": ("b.png", png_bytes(10))})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "busy"
        gate.set()
        t.join(10)
        assert first["r"].status_code == 200
        assert c.post("/v1/predict", files={"file": ("c.png", png_bytes(10))}).status_code == 200
        assert c.get("/v1/health").json()["rejected"] == 1
    assert det.threads and all(n.startswith("oddeye-infer") for n in det.threads)


def test_inference_queue_counts_and_single_thread():
    q = InferenceQueue(2)
    q.admit()
    q.admit()
    with pytest.raises(QueueFull):
        q.admit()
    q.release()
    q.admit()
    assert q.pending == 2
    names = {q.submit(lambda: threading.current_thread().name).result() for _ in range(5)}
    assert len(names) == 1
    q.shutdown()
    assert q.submit(lambda: 7).result() == 7  # a new worker after shutdown
    q.shutdown()
    with pytest.raises(ValueError):
        InferenceQueue(0)
