"""``oddeye serve``: an HTTP service and web page around one model (``.oddeye`` or ``.onnx``)."""

from __future__ import annotations

import argparse
import errno
import math
import sys
import time
from typing import Any

from oddeye.commands._common import add_device_flag, int_at_least

NAME = "serve"
HELP = "serve a model over HTTP: POST /v1/predict, a web page at /, OpenAPI docs at /docs"
DESCRIPTION = (
    "Load a model once and serve it: POST /v1/predict (multipart field 'file', one or more "
    "images) -> JSON with score, normalised score, label, threshold and a heatmap overlay PNG; "
    "GET /v1/health; GET /v1/model; a web page at /. Binds to 127.0.0.1 unless --host is given."
)


def port_number(text: str) -> int:
    """``--port``: a TCP port 1-65535, else an argparse error rather than an ``OverflowError``
    from the socket at bind time. 0 (any free port) is refused: the address printed at start
    and the page's links would then name port 0."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535, got {port}")
    return port


def upload_mib(text: str) -> float:
    """``--max-upload-mb``: a finite number of MiB of at least one byte, else an argparse error
    (0 or a negative size would refuse every upload)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of MiB, got {text!r}") from None
    if not math.isfinite(value) or int(value * 1048576) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of MiB, got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from oddeye.serve.config import ServeConfig  # no FastAPI needed to list the options

    d = ServeConfig()
    p.add_argument("--model", required=True, help="model file (.oddeye or .onnx)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=8000,
                   help="TCP port, 1-65535 (default 8000)")
    p.add_argument("--refs", nargs="+", metavar="REF",
                   help="reference good images for few-shot methods (set once at start)")
    p.add_argument("--max-upload-mb", type=upload_mib, default=d.max_upload_bytes / 1048576,
                   help=f"largest request body in MiB (default {d.max_upload_bytes // 1048576})")
    p.add_argument("--max-files", type=int_at_least(1), default=d.max_files,
                   help=f"most images per request (default {d.max_files})")
    p.add_argument("--max-pixels", type=int_at_least(1), default=d.max_pixels,
                   help=f"largest image in pixels, checked before decoding ({d.max_pixels})")
    p.add_argument("--max-request-pixels", type=int_at_least(1), default=d.max_request_pixels,
                   help=f"all images of one request together, in pixels, checked before "
                        f"decoding ({d.max_request_pixels})")
    p.add_argument("--body-timeout", type=int_at_least(1), default=d.body_timeout_s,
                   metavar="S", help=f"seconds an upload may take to arrive; slower ones get "
                                     f"408 (default {d.body_timeout_s})")
    p.add_argument("--max-connections", type=int_at_least(1), default=64,
                   help="open connections at once, uploads in progress included; more get "
                        "503 (default 64)")
    p.add_argument("--max-pending", type=int_at_least(1), default=d.max_pending,
                   help="requests in progress at once; more get 503 (default "
                        f"{d.max_pending})")
    p.add_argument("--overlay-max-side", type=int_at_least(1), default=d.overlay_max_side,
                   help=f"longest side of returned overlays in px (default {d.overlay_max_side})")
    p.add_argument("--batch-size", type=int_at_least(1), default=d.batch_size,
                   help=f"images per forward pass inside one request (default {d.batch_size})")
    add_device_flag(p)
    p.add_argument("--threads", type=int_at_least(1),
                   help="torch / onnxruntime threads (default: all cores)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])


def check_refs(det: Any, path: str, refs: list[str] | None) -> None:
    """Require ``--refs`` for a model that uses reference images and refuse them for one that
    does not, as ``oddeye predict`` and ``oddeye export`` do: silently ignored references would
    let a user believe they changed the scores."""
    from oddeye.errors import OddeyeError

    if getattr(det, "needs_references", False):
        if not refs:
            raise OddeyeError(f"model {path} ({det.method}) needs --refs with good images")
    elif refs:
        if type(det).__name__ == "OnnxDetector":
            raise OddeyeError(f"model {path}: an exported model takes no --refs (any "
                              "references are fixed inside it; re-export with other --refs)")
        raise OddeyeError(f"model {path} ({det.method}) does not use reference images; "
                          "drop --refs")


def load_detector(path: str, refs: list[str] | None = None, threads: int | None = None,
                  device: str = "auto"):
    """Load a ``.oddeye`` or ``.onnx`` model once (a torch one onto ``device``), check and set
    references (``check_refs``), and warm it up."""
    import numpy as np

    from oddeye.commands._common import is_onnx_path, open_model

    if threads and not is_onnx_path(path):
        import torch

        torch.set_num_threads(threads)
    det = open_model(path, device=device, threads=threads)
    check_refs(det, path, refs)
    if getattr(det, "needs_references", False):
        from oddeye.commands.predict import gather

        det.set_references(gather(refs))
    det.predict([np.full((det.size, det.size, 3), 128, np.uint8)])  # warm-up
    return det


def check_address(host: str, port: int) -> None:
    """An ``OddeyeError`` naming the host or port when the server could not listen there (a
    name that does not resolve, a port in use or not allowed): said in one line before the
    model loads, not as the web server's log lines after "open http://..."."""
    import socket

    from oddeye.errors import OddeyeError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OddeyeError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind(addr)
        except OSError as exc:
            why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise OddeyeError(f"cannot listen on {host} port {port}: {why}") from None


def run(args: argparse.Namespace) -> int:
    from oddeye.errors import OddeyeError

    try:
        import uvicorn

        from oddeye.serve.app import SameOriginMiddleware, create_app
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("oddeye"):
            raise  # our own module: a bug, not a missing extra
        raise OddeyeError(f"oddeye serve needs the optional 'serve' dependencies ({exc.name} is "
                          "not installed): pip install 'oddeye[serve]'") from None
    from oddeye.serve.config import ServeConfig

    check_address(args.host, args.port)  # before loading a model that could not be served
    t0 = time.perf_counter()
    det = load_detector(args.model, args.refs, args.threads, args.device)
    cfg = ServeConfig(max_upload_bytes=int(args.max_upload_mb * 1048576), max_files=args.max_files,
                      max_pixels=args.max_pixels, max_pending=args.max_pending,
                      max_request_pixels=args.max_request_pixels,
                      body_timeout_s=args.body_timeout,
                      overlay_max_side=args.overlay_max_side, batch_size=args.batch_size)
    # bound to a loopback address, only requests addressed to one are answered (no DNS
    # rebinding); bound to a public address, the operator decides who reaches it
    app = create_app(det, cfg, model_path=args.model,
                     loopback_only=SameOriginMiddleware._hostname(args.host)
                     in SameOriginMiddleware.LOOPBACK)
    print(f"loaded {det.method} from {args.model} in {time.perf_counter() - t0:.1f} s; "
          f"open http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1,
                limit_concurrency=args.max_connections)
    return 0
