"""End to end in a real headless browser: the web page at / against a live server on loopback.

Needs the ``playwright`` Python package and a Chromium executable (Debian: ``apt-get install
chromium``; or set ``ODDEYE_CHROMIUM``); Playwright's own browser downloads are never used.
Skips with the reason when either is missing. ``ODDEYE_SCREENSHOT_DIR`` keeps the screenshots.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """The Chromium executable to drive, or skip with how to install one."""
    for cand in (os.environ.get("ODDEYE_CHROMIUM"), shutil.which("chromium"),
                 "/usr/bin/chromium", shutil.which("chromium-browser")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    pytest.skip("no Chromium found: install Debian's `chromium` package (apt-get install "
                "chromium) or set ODDEYE_CHROMIUM=/path/to/chromium")


class LiveServer:
    """uvicorn in a background thread on 127.0.0.1 with a free port; stops on exit."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def test_page_end_to_end(patchcore_file, synth_root, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the `playwright` Python package is not installed "
        "(pip install playwright; its browser download is not needed)")
    exe = chromium_path()
    expect = sync_api.expect
    import oddeye
    from oddeye.serve.app import create_app
    from tests.export.models import sample_images

    det = oddeye.load(patchcore_file)
    picks = sample_images(synth_root, n_good=1, n_defect=2)
    files = []
    for p in picks:  # distinct names: synthetic files are 000.png in every folder
        dst = tmp_path / f"{p.parent.name}_{p.name}"
        shutil.copy(p, dst)
        files.append(dst)
    expected = det.predict(files)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    shots = Path(os.environ.get("ODDEYE_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)

    with LiveServer(create_app(det, model_path=patchcore_file)) as url, \
            sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=exe, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900})
        try:
            page = ctx.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(url)
            # locator waits: the page's Content-Security-Policy forbids the string eval that
            # wait_for_function polls with (the page itself never evaluates strings)
            expect(page.locator("#model")).to_contain_text("patchcore", timeout=20000)
            assert page.locator("#empty").is_visible()

            # choose two files
            page.set_input_files("#file-input", [str(f) for f in files[:2]])
            expect(page.locator("#history li")).to_have_count(2, timeout=60000)
            last = 1
            verdict = page.locator("#verdict").inner_text()
            assert verdict == ("DEFECTIVE" if expected.labels[last] else "GOOD")
            shown = float(page.locator("#score").inner_text().split()[0])
            assert shown == pytest.approx(expected.scores[last], rel=1e-3)
            assert files[last].name in page.locator("#meta").inner_text()
            width = page.evaluate("document.getElementById('overlay').naturalWidth")
            assert width == det.predict(files[last]).original_sizes[0][1]
            assert page.locator("#original img").evaluate("img => img.naturalWidth") > 0
            page.screenshot(path=str(shots / "serve_page.png"), full_page=True)

            # drop a file on the drop zone
            data = list(files[2].read_bytes())
            dt = page.evaluate_handle(
                """([bytes, name]) => { const dt = new DataTransfer();
                   dt.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'}));
                   return dt; }""", [data, files[2].name])
            page.dispatch_event("#drop", "drop", {"dataTransfer": dt})
            expect(page.locator("#history li")).to_have_count(3, timeout=60000)
            assert files[2].name in page.locator("#meta").inner_text()

            # a bad file: a readable error, nothing added to the list
            page.set_input_files("#file-input", str(bad))
            expect(page.locator("#error")).to_contain_text("notes.png", timeout=30000)
            err = page.locator("#error")
            assert err.is_visible() and "notes.png" in err.inner_text()
            assert "not a readable image" in err.inner_text()
            assert err.inner_text().count("notes.png") == 1
            assert "could not be scored" in page.locator("#status").inner_text()
            assert page.locator("#history li").count() == 3
            page.screenshot(path=str(shots / "serve_page_error.png"), full_page=True)

            # the history brings back an earlier result
            page.locator("#history li").nth(2).click()
            assert files[0].name in page.locator("#meta").inner_text()
            assert page_errors == []
        finally:
            ctx.close()
    assert (shots / "serve_page.png").stat().st_size > 10_000


def test_api_viewer_renders_offline_under_the_pages_policy(patchcore_file, tmp_path):
    """/docs draws the API from local files with the service's Content-Security-Policy; the
    browser is kept from every other host, as on a machine without a network."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the `playwright` Python package is not installed")
    pytest.importorskip("swagger_ui_bundle")
    exe = chromium_path()
    import oddeye
    from oddeye.serve.app import create_app

    det = oddeye.load(patchcore_file)
    with LiveServer(create_app(det, model_path=patchcore_file)) as url, \
            sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        try:
            outside: list[str] = []

            def only_local(route):
                if route.request.url.startswith(url):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            ctx.route("**/*", only_local)
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "docs")
            sync_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text(
                "oddeye", timeout=20000)
            sync_api.expect(page.locator(".opblock-summary-path").first).to_be_visible()
            assert "/v1/predict" in page.locator(".swagger-ui").inner_text()
            assert errors == [] and outside == []
        finally:
            ctx.close()
