"""The HTTP service: a FastAPI app around one loaded detector (``.oddeye`` or ``.onnx``).

Requests are admitted up to ``max_pending`` at a time (the rest get 503 at once, so a slow model
never builds an unbounded backlog); inference runs on one worker thread, so the model is used by
one request at a time and loaded once. Uploads are limited in bytes, files and pixels, and decoded
by content with ``oddeye.io.images`` (the same rules as every other surface); anything wrong with
a request is a 4xx JSON error ``{"error": {"status", "code", "message", "file"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from oddeye import __version__
from oddeye.errors import ImageReadError
from oddeye.io.modelinfo import describe_model
from oddeye.serve.config import ServeConfig

API_PREFIX = "/v1"


class ApiError(StarletteHTTPException):
    """A request problem reported as JSON: HTTP status, stable code, message, offending file."""

    def __init__(self, status: int, code: str, message: str, file: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code, self.message, self.file = code, message, file


def error_body(status: int, code: str, message: str, file: str | None = None) -> dict:
    """The JSON body of every error response."""
    return {"error": {"status": status, "code": code, "message": message, "file": file}}


# ---------------------------------------------------------------------------- admission
class QueueFull(Exception):
    """Raised by ``InferenceQueue.admit`` when ``max_pending`` requests are already in."""


class InferenceQueue:
    """At most ``max_pending`` requests in the service; their inference on one worker thread."""

    def __init__(self, max_pending: int):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_pending = int(max_pending)
        self._pending = 0
        self._lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> int:
        """Requests admitted and not finished (waiting for the model or running)."""
        return self._pending

    def admit(self) -> None:
        """Take a slot or raise ``QueueFull``; pair every success with ``release``."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise QueueFull
            self._pending += 1

    def release(self) -> None:
        """Give back a slot taken by ``admit``."""
        with self._lock:
            self._pending = max(0, self._pending - 1)

    def submit(self, fn: Callable, *args: Any) -> Future:
        """Run ``fn(*args)`` on the single inference thread (in arrival order)."""
        with self._lock:
            if self._worker is None:  # started on first use, and again after a shutdown
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oddeye-infer")
            return self._worker.submit(fn, *args)

    async def run(self, fn: Callable, *args: Any) -> Any:
        """Await ``fn(*args)`` run on the inference thread."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def shutdown(self) -> None:
        """Stop the worker after the work already queued (a later submit starts a new one)."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=True)


# --------------------------------------------------------------------------- body limit
class BodyTooLarge(ApiError):
    """The request body passed ``max_upload_bytes``."""

    def __init__(self, limit: int):
        super().__init__(413, "upload_too_large",
                         f"request body is larger than the limit of {limit} bytes "
                         f"({limit / 1048576:.1f} MiB); send fewer or smaller images")


class SameOriginMiddleware:
    """Refuse what a web page of another site could make a browser send: with
    ``loopback_only`` (a server bound to 127.0.0.1 / localhost) a Host header that is not a
    loopback name (DNS rebinding), and always a non-GET request whose Origin is not the server
    itself (a cross-site form POST needs no CORS preflight). 403 JSON errors."""

    LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

    def __init__(self, app: Callable, loopback_only: bool = False):
        self.app, self.loopback_only = app, loopback_only

    @staticmethod
    def _hostname(netloc: str) -> str:
        if netloc.startswith("["):  # [::1]:8000
            return netloc[1:netloc.find("]")].lower()
        return netloc.rsplit(":", 1)[0].lower() if netloc.count(":") == 1 else netloc.lower()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from urllib.parse import urlsplit

        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        problem = None
        if self.loopback_only and self._hostname(host) not in self.LOOPBACK:
            problem = ("host_not_allowed", f"this server answers requests to its loopback "
                       f"address only, not to Host {host!r}")
        origin = headers.get("origin")
        if problem is None and origin is not None and scope.get("method") not in ("GET", "HEAD"):
            if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
                problem = ("cross_origin", f"requests from another site ({origin}) are refused")
        if problem is None:
            await self.app(scope, receive, send)
            return
        resp = JSONResponse(error_body(403, *problem), status_code=403)
        await send({"type": "http.response.start", "status": 403, "headers": resp.raw_headers})
        await send({"type": "http.response.body", "body": resp.body})


#: Defence in depth on every response: the page is self-contained (inline script and style,
#: data:/blob: images), answers are never cached (they hold the uploaded images' results), and
#: no browser sniffs a JSON answer that echoes a file name into HTML.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                 b"style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
                                 b"frame-ancestors 'none'"),
]


class SecurityHeadersMiddleware:
    """Add ``SECURITY_HEADERS`` to every response (the OpenAPI viewer at /docs included: its
    script and style are served from this process, ``docs_page``)."""

    def __init__(self, app: Callable):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                own = message.get("headers", [])
                named = {bytes(k).lower() for k, _ in own}  # a route's own value stays
                message = {**message, "headers": [*own, *(h for h in SECURITY_HEADERS
                                                          if h[0] not in named)]}
            await send(message)

        await self.app(scope, receive, with_headers)


#: Files of the ``swagger-ui-bundle-v2`` package the /docs viewer loads (from this process,
#: never a CDN: the service must work on a machine without a network).
DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "favicon-32x32.png": "image/png"}


def docs_assets_dir() -> Path | None:
    """The Swagger UI files of the installed ``swagger-ui-bundle-v2`` package, or None (also
    for the older ``swagger-ui-bundle``, same module name: its Swagger UI 4 cannot read the
    OpenAPI 3.1 description FastAPI writes)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(str(swagger_ui_path))
    major = path.name.removeprefix("swagger-ui-").split(".")[0]
    if not major.isdigit() or int(major) < 5:
        return None
    return path if all((path / name).is_file() for name in DOCS_ASSETS) else None


@functools.lru_cache(maxsize=len(DOCS_ASSETS))
def docs_asset_bytes(folder: Path, name: str) -> bytes:
    """One of ``DOCS_ASSETS`` in ``folder``, read once per process (the bundle is 1.5 MB)."""
    return (folder / name).read_bytes()


def docs_page(title: str) -> HTMLResponse:
    """The OpenAPI viewer on locally served assets; without them, a page that says how to get
    them (the machine-readable description at /openapi.json works either way)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    if docs_assets_dir() is None:
        return HTMLResponse(
            "<!doctype html><title>oddeye API</title><p>The interactive API viewer needs the "
            "<code>swagger-ui-bundle-v2</code> package (<code>pip install "
            "'oddeye[serve]'</code>); it is not installed here. The API description is at "
            "<a href=\"/openapi.json\">/openapi.json</a>.</p>")
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} - API",
                               swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                               swagger_css_url="/docs/assets/swagger-ui.css",
                               swagger_favicon_url="/docs/assets/favicon-32x32.png")


class BodyTimeout(ApiError):
    """The request body did not arrive within ``body_timeout_s``."""

    def __init__(self, seconds: float):
        super().__init__(408, "upload_timeout",
                         f"the request body did not arrive within {seconds:g} s")


class BodyLimitMiddleware:
    """Pure ASGI middleware: refuse bodies above ``max_bytes`` by header, or while they stream."""

    def __init__(self, app: Callable, max_bytes: int, timeout_s: float | None = None):
        self.app, self.max_bytes = app, int(max_bytes)
        self.timeout_s = timeout_s

    async def _refuse(self, send: Callable, exc: ApiError | None = None) -> None:
        exc = exc or BodyTooLarge(self.max_bytes)
        resp = JSONResponse(error_body(exc.status_code, exc.code, exc.message),
                            status_code=exc.status_code, headers={"Connection": "close"})
        await send({"type": "http.response.start", "status": exc.status_code,
                    "headers": resp.raw_headers})
        await send({"type": "http.response.body", "body": resp.body})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(send)
                    return
        seen = 0
        started = False
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s

        async def limited_receive() -> dict:
            nonlocal seen
            if deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(),
                                                     max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    raise BodyTimeout(self.timeout_s) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTimeout) as exc:
            if not started:
                await self._refuse(send, exc)


# ------------------------------------------------------------------------------ decoding
#: Pillow formats an upload may be in (the documented ones): every other decoder Pillow has
#: (SGI, PCX, TGA, ICO, ...) stays out of reach of network input.
UPLOAD_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")


def upload_size(data: bytes, filename: str) -> tuple[int, int]:
    """(width, height) from the header of an upload in an accepted format, decoding nothing;
    (0, 0) when the header cannot be read (``read_image`` then says why). A readable image of
    another format is a 415 naming it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as probe:
            return probe.size
    except Exception:  # noqa: BLE001 - any unreadable header: checked below
        pass
    try:
        with Image.open(io.BytesIO(data)) as other:
            kind = other.format
    except Exception:  # noqa: BLE001 - not an image at all: read_image names the problem
        return 0, 0
    raise ApiError(415, "unsupported_image", f"{filename}: {kind} images are not accepted "
                   f"(send {', '.join(UPLOAD_FORMATS)})", filename)


def decode_upload(data: bytes, filename: str, max_pixels: int,
                  size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode uploaded bytes by content with ``oddeye.io.images.read_image``; errors name it.
    ``size``: the header's (width, height) when the caller has read it (``upload_size``)."""
    from oddeye.io.images import read_image

    if not data:
        raise ApiError(400, "empty_file", f"{filename}: the uploaded file is empty", filename)
    w, h = size or upload_size(data, filename)  # header only: refuse huge images undecoded
    if w * h > max_pixels:
        raise ApiError(413, "image_too_large", f"{filename}: {w}x{h} pixels is more than the "
                       f"limit of {max_pixels} pixels", filename)
    fd, tmp = tempfile.mkstemp(prefix="oddeye-upload-", suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return read_image(tmp)
    except ImageReadError as exc:
        message = str(exc).replace(tmp, filename)
        raise ApiError(415, "unsupported_image", message, filename) from None
    finally:
        os.unlink(tmp)


def capped(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` resized (bilinear, aspect kept) so its longer side is at most ``max_side``."""
    from PIL import Image

    h, w = image.shape[:2]
    f = min(1.0, max_side / max(h, w))
    th, tw = max(1, round(h * f)), max(1, round(w * f))
    if (th, tw) == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((tw, th), Image.BILINEAR))


def shrink(image: np.ndarray, size: int, max_side: int
           ) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """((h, w), the model's input (size x size, as ``predict`` resizes it), the image capped to
    ``max_side`` for its overlay): only these are kept while the request waits, not the full
    decoded image (a 40-megapixel photo is 120 MB)."""
    from oddeye.preprocess import resize_uint8

    return image.shape[:2], resize_uint8(image, size), capped(image, max_side)


def overlay_png(image: np.ndarray, model_map: np.ndarray, threshold: float, scale: float,
                max_side: int) -> tuple[str, tuple[int, int]]:
    """Base64 PNG of the heatmap overlay, at the image size capped to ``max_side``; and (w, h)."""
    import torch
    from PIL import Image

    from oddeye.postprocess import upsample
    from oddeye.report.overlay import overlay

    image = capped(image, max_side)  # the service hands it capped already: then a no-op
    th, tw = image.shape[:2]
    amap = upsample(torch.from_numpy(np.ascontiguousarray(model_map))[None], (th, tw))[0].numpy()
    buf = io.BytesIO()
    Image.fromarray(overlay(image, amap, threshold, scale)).save(buf, format="PNG",
                                                                 compress_level=3)
    return base64.b64encode(buf.getvalue()).decode("ascii"), (tw, th)


# ----------------------------------------------------------------------------- the app
def create_app(detector: Any, config: ServeConfig | None = None,
               model_path: str | Path | None = None, loopback_only: bool = False) -> FastAPI:
    """A FastAPI app serving ``detector`` (loaded once by the caller) with the given limits;
    ``loopback_only``: answer only requests addressed to a loopback host name (the server is
    bound to one), which shuts out DNS rebinding."""
    from oddeye.serve.page import INDEX_HTML

    cfg = config or ServeConfig()
    queue = InferenceQueue(cfg.max_pending)
    info = describe_model(detector, model_path)
    stats = {"started": time.time(), "requests": 0, "images": 0, "rejected": 0, "errors": 0}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        queue.shutdown()

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None,  # served below from local files (docs_page), never from a CDN
        redoc_url=None,
        title="oddeye",
        version=__version__,
        summary="Visual anomaly detection: score images and localise defects.",
        description=(f"Serving **{info['method']}** ({info['backbone']}, "
                     f"{info['input_size']}px). `POST /v1/predict` with one or more images in "
                     "the multipart field `file`."),
    )
    app.state.detector, app.state.config, app.state.queue = detector, cfg, queue
    app.state.stats = stats
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_upload_bytes,
                       timeout_s=cfg.body_timeout_s)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(SameOriginMiddleware, loopback_only=loopback_only)  # outermost

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or {404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error")
        message = getattr(exc, "message", None) or str(exc.detail)
        return JSONResponse(error_body(exc.status_code, code, message, getattr(exc, "file", None)),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
        message = "; ".join(parts) or "invalid request"
        if any("file" in err.get("loc", ()) for err in exc.errors()):  # ("body", "file", 0) too
            message = ("no image received: send multipart/form-data with one or more files in "
                       "the field 'file' (a file upload, not a text value; a truncated body "
                       "reads as no file)")
        return JSONResponse(error_body(422, "invalid_request", message), status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        stats["errors"] += 1
        return JSONResponse(error_body(500, "internal_error",
                                       f"the server failed on this request ({type(exc).__name__}: "
                                       f"{exc}); it keeps running"), status_code=500)

    # HEAD is answered wherever GET is (``curl -I``, uptime probes); the server sends the
    # headers only. The API's HEAD routes stay out of the OpenAPI schema (one operation each).
    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse,
                   include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(INDEX_HTML)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return docs_page(app.title)

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        folder = docs_assets_dir()
        if folder is None or name not in DOCS_ASSETS:
            raise StarletteHTTPException(404, f"no such file: /docs/assets/{name}")
        return Response(docs_asset_bytes(folder, name), media_type=DOCS_ASSETS[name],
                        headers={"cache-control": "max-age=86400"})

    @app.head(f"{API_PREFIX}/health", include_in_schema=False)
    @app.get(f"{API_PREFIX}/health", summary="Liveness and queue state")
    async def health() -> dict:
        return {"status": "ok", "model_loaded": True, "pending": queue.pending,
                "max_pending": queue.max_pending,
                "uptime_s": round(time.time() - stats["started"], 1),
                **{k: stats[k] for k in ("requests", "images", "rejected", "errors")}}

    @app.head(f"{API_PREFIX}/model", include_in_schema=False)
    @app.get(f"{API_PREFIX}/model", summary="The served model: method, backbone, threshold, size")
    async def model() -> dict:
        return {**info, "limits": asdict(cfg)}

    def infer(images: list[np.ndarray]) -> tuple[Any, float]:
        start = time.perf_counter()
        pred = detector.predict(images, batch_size=cfg.batch_size)
        return pred, time.perf_counter() - start

    @app.post(f"{API_PREFIX}/predict", summary="Score one or more images",
              responses={400: {"description": "empty file or too many files"},
                         413: {"description": "upload or image too large"},
                         415: {"description": "not a decodable image"},
                         503: {"description": "too many requests in progress; retry later"}})
    async def predict(
        file: list[UploadFile] = File(..., description="one or more image files"),
        overlay: bool = Query(True, description="include the heatmap overlay PNG (base64)"),
    ) -> dict:
        """Score images: score, normalised score (0.5 at the threshold), label, overlay PNG."""
        from starlette.concurrency import run_in_threadpool

        t0 = time.perf_counter()
        if len(file) > cfg.max_files:
            raise ApiError(400, "too_many_files", f"{len(file)} files in one request; the limit "
                           f"is {cfg.max_files}")
        try:
            queue.admit()
        except QueueFull:
            stats["rejected"] += 1
            raise ApiError(503, "busy", f"{queue.max_pending} requests are already in progress; "
                           "retry shortly", headers={"Retry-After": "1"}) from None
        try:
            stats["requests"] += 1
            names = [f.filename or f"file{i}" for i, f in enumerate(file)]
            blobs = [await f.read() for f in file]
            sizes = [upload_size(b, n) for b, n in zip(blobs, names, strict=True)]
            total = sum(w * h for w, h in sizes)
            if total > cfg.max_request_pixels:
                raise ApiError(413, "request_too_large", f"the {len(blobs)} images hold {total} "
                               f"pixels together, more than the limit of "
                               f"{cfg.max_request_pixels} per request; send fewer or smaller "
                               f"images")
            uploads = await run_in_threadpool(
                lambda: [shrink(decode_upload(b, n, cfg.max_pixels, wh), detector.size,
                                cfg.overlay_max_side)
                         for b, n, wh in zip(blobs, names, sizes, strict=True)])
            shapes = [u[0] for u in uploads]
            t1 = time.perf_counter()
            pred, model_s = await queue.run(infer, [u[1] for u in uploads])
            t2 = time.perf_counter()
            thr, scale = float(detector.threshold_), float(detector.score_scale_)

            def render() -> list[dict]:
                out = []
                for i, name in enumerate(names):
                    h, w = shapes[i]
                    item = {"filename": name, "width": w, "height": h,
                            "score": float(pred.scores[i]),
                            "normalized_score": float(pred.normalized_scores[i]),
                            "label": int(pred.labels[i]),
                            "verdict": "defective" if pred.labels[i] else "good",
                            "threshold": thr}
                    if overlay:
                        png, size = overlay_png(uploads[i][2], pred.maps[i], thr, scale,
                                                cfg.overlay_max_side)
                        item["overlay_png_base64"] = png
                        item["overlay_size"] = list(size)
                    out.append(item)
                return out

            results = await run_in_threadpool(render)
            stats["images"] += len(results)
            t3 = time.perf_counter()
        finally:
            queue.release()
        return {"results": results,
                "model": {k: info[k] for k in ("method", "backbone", "input_size", "threshold")},
                "timing_ms": {"decode": round(1000 * (t1 - t0), 2),
                              "queue": round(1000 * (t2 - t1 - model_s), 2),
                              "inference": round(1000 * model_s, 2),
                              "overlay": round(1000 * (t3 - t2), 2),
                              "total": round(1000 * (t3 - t0), 2)}}

    return app
