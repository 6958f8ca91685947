"""Limits found missing by a web audit (twenty-fifth session): pixels per request, accepted
formats, requests a foreign web page could send, uploads that never finish; and a report whose
category name matplotlib would read as a formula."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from oddeye.serve.app import BodyLimitMiddleware, ServeConfig, create_app  # noqa: E402
from tests.serve.test_app import StubDetector, png_bytes  # noqa: E402


def _encoded(fmt: str, size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 90, np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def test_pixels_of_all_images_together_are_limited_before_decoding():
    cfg = ServeConfig(max_request_pixels=2000, max_pixels=1500)
    with TestClient(create_app(StubDetector(), cfg)) as c:
        one = png_bytes(100, size=(40, 30))  # 1200 px: each under max_pixels
        ok = c.post("/v1/predict", files=[("file", ("a.png", one, "image/png"))])
        assert ok.status_code == 200
        r = c.post("/v1/predict", files=[("file", (f"{i}.png", one, "image/png"))
                                         for i in range(2)])
        assert r.status_code == 413
        err = r.json()["error"]
        assert err["code"] == "request_too_large" and "2400 pixels" in err["message"]


def test_results_are_those_of_the_full_image_though_only_small_copies_are_kept():
    """The service keeps the model-size input and the overlay-size copy, not the decoded
    image: scores and sizes are those of the original."""
    with TestClient(create_app(StubDetector(), ServeConfig(overlay_max_side=20))) as c:
        r = c.post("/v1/predict", files=[("file", ("a.png", png_bytes(200, size=(400, 300)),
                                                    "image/png"))]).json()["results"][0]
    assert (r["width"], r["height"]) == (400, 300) and r["overlay_size"] == [20, 15]
    assert r["score"] == pytest.approx(200 / 255, abs=1e-3)


@pytest.mark.parametrize("fmt", ["TGA", "PCX", "SGI"])
def test_only_the_documented_formats_are_decoded(fmt):
    with TestClient(create_app(StubDetector(), ServeConfig())) as c:
        r = c.post("/v1/predict", files=[("file", ("x.img", _encoded(fmt), "image/x"))])
        assert r.status_code == 415
        assert f"{fmt} images are not accepted" in r.json()["error"]["message"]
        for ok in ("PNG", "JPEG", "BMP", "TIFF", "WEBP"):
            assert c.post("/v1/predict", files=[("file", ("y", _encoded(ok), "image/x"))]
                          ).status_code == 200, ok


def test_a_loopback_server_answers_loopback_hosts_and_its_own_origin_only():
    app = create_app(StubDetector(), ServeConfig(), loopback_only=True)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/v1/health").status_code == 200
        assert c.get("/v1/health", headers={"Host": "localhost:8000"}).status_code == 200
        r = c.get("/v1/health", headers={"Host": "attacker.example:8000"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
        files = [("file", ("a.png", png_bytes(10), "image/png"))]
        own = c.post("/v1/predict", files=files, headers={"Origin": "http://127.0.0.1:8000"})
        assert own.status_code == 200
        other = c.post("/v1/predict", files=files, headers={"Origin": "http://evil.example"})
        assert other.status_code == 403 and other.json()["error"]["code"] == "cross_origin"
    with TestClient(create_app(StubDetector(), ServeConfig()), base_url="http://10.0.0.5") as c:
        assert c.get("/v1/health", headers={"Host": "inspect.example"}).status_code == 200


def test_an_upload_that_does_not_arrive_in_time_gets_408():
    async def app(scope, receive, send):  # reads the body as any endpoint would
        while (await receive()).get("more_body"):
            pass

    async def trickle():
        await asyncio.sleep(5)
        return {"type": "http.request", "body": b"x", "more_body": True}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": []}
    asyncio.run(BodyLimitMiddleware(app, max_bytes=1000, timeout_s=0.05)(scope, trickle, send))
    assert sent[0]["status"] == 408 and b"upload_timeout" in sent[1]["body"]


def test_report_shows_a_dollar_category_name_as_written():
    from oddeye.report.html import curves_png

    details = {"price $\\undefinedcmd$": {"labels": [0, 0, 1, 1], "scores": [0.1, 0.2, 0.8, 0.3]},
               "a$b$c": {"labels": [0, 1], "scores": [0.1, 0.9]}}
    assert curves_png(details, 0.5)  # used to raise matplotlib's ParseFatalException


def test_responses_carry_hardening_headers_and_a_text_field_gets_the_friendly_message():
    with TestClient(create_app(StubDetector(), ServeConfig())) as c:
        page = c.get("/")
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        r = c.post("/v1/predict", files=[("file", ("a.png", png_bytes(10), "image/png"))])
        assert r.headers["cache-control"] == "no-store"
        text = c.post("/v1/predict", data={"file": "x"})
        assert text.status_code == 422
        message = text.json()["error"]["message"]
        assert message.startswith("no image received") and "<class" not in message


def test_serve_command_caps_connections_and_answers_loopback_names_only(monkeypatch, tmp_path):
    """What `oddeye serve` hands uvicorn and the app: the connection cap, and the loopback-only
    Host check when bound to a loopback address (not when bound to every interface)."""
    import uvicorn

    from oddeye.cli import main
    from oddeye.commands import serve as serve_cmd

    seen = []
    monkeypatch.setattr(serve_cmd, "load_detector", lambda *a, **k: StubDetector())
    monkeypatch.setattr(serve_cmd, "check_address", lambda host, port: None)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.append((app, kw)))
    for host, loopback in (("127.0.0.1", True), ("0.0.0.0", False)):
        assert main(["serve", "--model", str(tmp_path / "m.oddeye"), "--host", host,
                     "--max-connections", "5"]) == 0
        app, kw = seen[-1]
        assert kw["limit_concurrency"] == 5
        with TestClient(app, base_url="http://127.0.0.1:8000") as c:
            r = c.get("/v1/health", headers={"Host": "elsewhere.example"})
            assert (r.status_code == 403) is loopback


def test_api_viewer_is_served_from_this_process_not_a_cdn(monkeypatch):
    """/docs used to load Swagger UI from a CDN: blank on a machine without a network, and the
    only page without the security headers."""
    import oddeye.serve.app as app_module

    pytest.importorskip("swagger_ui_bundle")
    with TestClient(create_app(StubDetector(), ServeConfig())) as c:
        page = c.get("/docs")
        assert page.status_code == 200
        assert "/docs/assets/swagger-ui-bundle.js" in page.text
        assert "cdn" not in page.text.lower() and "https://" not in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for name, kind in app_module.DOCS_ASSETS.items():
            asset = c.get(f"/docs/assets/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
            assert len(asset.content) > 500
            assert asset.headers.get_list("cache-control") == ["max-age=86400"]
        assert c.get("/docs/assets/..%2Fpackage.json").status_code == 404
        assert c.get("/docs/assets/index.html").status_code == 404  # only the listed files
        assert c.get("/redoc").status_code == 404  # its script came from a CDN too
        assert c.get("/openapi.json").json()["info"]["title"] == "oddeye"
    monkeypatch.setattr(app_module, "docs_assets_dir", lambda: None)
    with TestClient(create_app(StubDetector(), ServeConfig())) as c:
        page = c.get("/docs")
        assert page.status_code == 200 and "swagger-ui-bundle-v2" in page.text
        assert "/openapi.json" in page.text and "https://" not in page.text
        assert c.get("/docs/assets/swagger-ui.css").status_code == 404


@pytest.mark.parametrize(("folder", "usable"), [("swagger-ui-5.31.0", True),
                                                ("swagger-ui-4.15.5", False)])
def test_only_a_swagger_ui_that_reads_openapi_3_1_is_used(folder, usable, tmp_path, monkeypatch):
    """The old ``swagger-ui-bundle`` (same module name) ships Swagger UI 4, which shows
    "Unable to render this definition" for FastAPI's OpenAPI 3.1: its files are not served."""
    import sys
    import types

    from oddeye.serve.app import DOCS_ASSETS, docs_assets_dir

    path = tmp_path / folder
    path.mkdir()
    for name in DOCS_ASSETS:
        (path / name).write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "swagger_ui_bundle",
                        types.SimpleNamespace(swagger_ui_path=path))
    assert docs_assets_dir() == (path if usable else None)
    (path / "swagger-ui.css").unlink()
    assert docs_assets_dir() is None
